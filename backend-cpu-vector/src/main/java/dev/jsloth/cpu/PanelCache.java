package dev.jsloth.cpu;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.LongConsumer;

/**
 * The GEMM B-operand panels of one frozen tensor ({@code Backend.freeze}: LoRA's base weights), packed on first use and
 * kept until the tensor is freed, so a training step stops repacking every weight for every product (the forward's
 * {@code X W^T} and the backward's {@code dY W} each have their own layout). Blocks are keyed by everything that decides
 * their layout. All caches together hold at most {@link #LIMIT} bytes ({@code -Djsloth.cpu.panelCacheBytes}, default 1
 * GiB); past it the GEMM packs into its per-thread buffer as before. The bytes count as the backend's live memory.
 */
final class PanelCache {
    static final long LIMIT = Long.getLong("jsloth.cpu.panelCacheBytes", 1L << 30);
    private static final AtomicLong HELD = new AtomicLong();

    /** A block of op(B)'s columns [jc, jc + nc) over all of K (in the GEMM's K blocks), for op(B) transposed or not. */
    record Key(boolean trans, int k, int jc, int nc) {
    }

    /** Packs a block into the given segment (k x whole panels of floats). */
    interface Packer {
        void pack(MemorySegment into);
    }

    private final Map<Key, MemorySegment> blocks = new HashMap<>();
    private final Arena arena = Arena.ofShared();
    private final LongConsumer accounting;
    private long bytes;
    private boolean freed;

    /** {@code accounting} hears every change of the bytes held (positive when packing, negative when freed). */
    PanelCache(LongConsumer accounting) {
        this.accounting = accounting;
    }

    /** The block for {@code key} ({@code floats} long), packed now if it is not yet; null when the budget is spent. */
    synchronized MemorySegment block(Key key, long floats, Packer packer) {
        if (freed) return null;
        MemorySegment seg = blocks.get(key);
        if (seg != null) return seg;
        long size = 4 * floats;
        if (HELD.addAndGet(size) > LIMIT) {
            HELD.addAndGet(-size);
            return null;
        }
        try {
            seg = arena.allocate(size, 64);
            packer.pack(seg);
        } catch (RuntimeException | Error e) { // nothing was kept: the budget goes back (the memory with the tensor)
            HELD.addAndGet(-size);
            throw e;
        }
        blocks.put(key, seg);
        bytes += size;
        accounting.accept(size);
        return seg;
    }

    /** {@link #keeps}'s answer for each layout (index 1: transposed), decided at its first question. */
    private final Boolean[] keeps = new Boolean[2];

    /**
     * Whether this tensor's panels in one layout ({@code trans}) are kept, or would be: asked first, some are held
     * already or {@code bytes} more fit the budget; the answer then stays for the tensor's life, so that which kernel
     * serves its products ({@link GemmFewRows} reads a weight as stored where the panels are not kept), and with it the
     * bits, do not change as other tensors come and go.
     */
    synchronized boolean keeps(boolean trans, long bytes) {
        int at = trans ? 1 : 0;
        if (keeps[at] == null) {
            boolean held = false;
            for (Key key : blocks.keySet()) held |= key.trans() == trans;
            keeps[at] = !freed && (held || HELD.get() + bytes <= LIMIT);
        }
        return keeps[at];
    }

    /** Frees every block (the tensor is being freed). */
    synchronized void free() {
        if (freed) return;
        freed = true;
        blocks.clear();
        arena.close();
        HELD.addAndGet(-bytes);
        accounting.accept(-bytes);
        bytes = 0;
    }
}
