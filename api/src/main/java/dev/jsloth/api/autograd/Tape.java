package dev.jsloth.api.autograd;

import dev.jsloth.api.Allocations;
import dev.jsloth.api.Tensor;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.List;

/**
 * Records blocks as they run forward and replays their hand-written backward passes in reverse.
 *
 * <p>With gradient checkpointing a block's saved activations are freed right after its forward and recomputed
 * from its input when backward reaches it, so only block inputs stay alive between the passes: memory falls
 * from O(layers x activations per layer) to O(layers x hidden) + one layer's activations, at the cost of one
 * more forward per block. A block may keep part of its forward across the checkpoint when recomputing it costs
 * more than its memory ({@link Block#keepForRecompute}: the decoder layer keeps its attention output, or its whole
 * attention half, see {@link dev.jsloth.api.blocks.Recompute}).
 *
 * <p>Ownership: the tape owns every block output it returns and every saved state; {@link #close()} frees them.
 * The first input stays the caller's.
 */
public final class Tape implements AutoCloseable {
    private final boolean checkpointing;
    private final BatchContext ctx;
    private final Deque<Entry<?>> entries = new ArrayDeque<>();
    private final List<Tensor> owned = new ArrayList<>();

    private static final class Entry<S extends AutoCloseable> {
        final Block<S> block;
        final Tensor input;
        S saved;
        AutoCloseable kept; // what the block keeps across checkpointing (selective recompute), or null
        boolean handedOver; // checkpointed: the saved state was given up and is recomputed before the backward

        Entry(Block<S> block, Tensor input, S saved) {
            this.block = block;
            this.input = input;
            this.saved = saved;
        }

        S savedOrRecompute(BatchContext ctx) {
            if (handedOver) { // a block that saved nothing (null) is not run again
                handedOver = false;
                saved = block.recompute(input, kept, ctx);
                kept = null; // now owned by the recomputed state
            }
            return saved;
        }

        /** Frees the saved state and what the block kept for its recompute. */
        void release() {
            AutoCloseable s = saved, k = kept;
            saved = null;
            kept = null;
            try {
                Allocations.closeInOrder(s, k); // both, even if the first fails
            } catch (RuntimeException e) {
                throw new IllegalStateException("closing saved activations failed", e);
            }
        }
    }

    public Tape(BatchContext ctx, boolean checkpointing) {
        this(ctx, checkpointing, true);
    }

    private Tape(BatchContext ctx, boolean checkpointing, boolean recording) {
        this.ctx = ctx;
        this.checkpointing = checkpointing;
        this.recording = recording;
    }

    /**
     * A tape for a forward pass that no backward follows (evaluation, logits): each block's saved state is freed as soon
     * as it returns, and each output as soon as the next block has read it, so the pass holds one layer's activations
     * rather than every layer's (an 8B model's eval batch of 4,096 tokens kept ~17 GB of them). Its backward methods
     * refuse.
     */
    public static Tape forwardOnly(BatchContext ctx) {
        return new Tape(ctx, false, false);
    }

    private final boolean recording;

    public boolean checkpointing() {
        return checkpointing;
    }

    /** Runs {@code block} forward on x and records it; returns the output (owned by the tape). */
    public <S extends AutoCloseable> Tensor forward(Block<S> block, Tensor x) {
        Block.Forward<S> f = block.forward(x, ctx);
        boolean inputOwned = !owned.isEmpty() && owned.getLast() == x;
        owned.add(f.y()); // the tape's from here, so that it is freed with the tape whatever fails below
        if (!recording) {
            Allocations.closeInOrder(f.saved()); // a block may save nothing (null)
            if (inputOwned) owned.remove(owned.size() - 2).close(); // the input, made by this tape, is read
            return f.y();
        }
        Entry<S> e = new Entry<>(block, x, f.saved());
        if (checkpointing && f.saved() != null) {
            e.saved = null; // handed over: the block keeps part of it and frees the rest
            e.handedOver = true;
            e.kept = block.keepForRecompute(f.saved());
        }
        entries.push(e);
        return f.y();
    }

    /**
     * Runs every recorded block's backward in reverse order from dY (the caller's) and returns dX of the first
     * input (a new tensor, the caller's). The recorded entries are consumed.
     */
    public Tensor backward(Tensor dy) {
        return backward(dy, null);
    }

    /**
     * {@link #backward(Tensor)}, calling {@code afterBlock} with each block's position (0 = first recorded) as soon
     * as its backward is queued: from then on its parameters' gradients are final, so a data-parallel trainer can
     * start reducing them while the blocks before it run backward.
     */
    public Tensor backward(Tensor dy, java.util.function.IntConsumer afterBlock) {
        if (!recording) throw new IllegalStateException("a forward-only tape has no backward");
        return backwardUntil(dy, 0, afterBlock);
    }

    /**
     * {@link #backward(Tensor, java.util.function.IntConsumer)} where the first input's gradient is not needed (a model
     * whose embeddings are frozen): the first recorded block runs {@link Block#backwardParametersOnly}, and nothing is
     * returned.
     */
    public void backwardParameters(Tensor dy, java.util.function.IntConsumer afterBlock) {
        if (!recording) throw new IllegalStateException("a forward-only tape has no backward");
        Tensor grad = backwardUntil(dy, 1, afterBlock);
        try {
            if (!entries.isEmpty()) {
                step(entries.pop(), grad, false);
                if (afterBlock != null) afterBlock.accept(0);
            }
        } finally {
            if (grad != dy) grad.close();
        }
    }

    /**
     * Runs the recorded blocks' backward in reverse until {@code left} entries remain and returns the gradient reached
     * ({@code dy} itself if none ran; else a new tensor, the caller's). A block or afterBlock that fails leaves the
     * gradient in hand freed.
     */
    private Tensor backwardUntil(Tensor dy, int left, java.util.function.IntConsumer afterBlock) {
        Tensor grad = dy;
        boolean handedOver = false;
        try {
            while (entries.size() > left) {
                int position = entries.size() - 1;
                Entry<?> e = entries.pop();
                Tensor next = step(e, grad, true);
                if (grad != dy) grad.close();
                grad = next;
                if (afterBlock != null) afterBlock.accept(position);
            }
            handedOver = true;
            return grad;
        } finally {
            if (!handedOver && grad != dy) grad.close();
        }
    }

    /** One block's backward: dX, or (without {@code inputGradient}) its parameters' gradients only and null. */
    private <S extends AutoCloseable> Tensor step(Entry<S> e, Tensor grad, boolean inputGradient) {
        try {
            S saved = e.savedOrRecompute(ctx);
            if (inputGradient) return e.block.backward(grad, saved, ctx);
            e.block.backwardParametersOnly(grad, saved, ctx);
            return null;
        } finally {
            e.release();
        }
    }

    /** Frees every entry's saved state and every output the tape owns, all of them even if one fails (the first failure is thrown). */
    @Override
    public void close() {
        List<AutoCloseable> all = new ArrayList<>();
        for (Entry<?> e : entries) all.add(e::release);
        all.addAll(owned);
        entries.clear();
        owned.clear();
        Allocations.closeInOrder(all);
    }
}
