package dev.jsloth.api.autograd;

import dev.jsloth.api.Tensor;

/**
 * A unit of the manual-autograd tape: a forward that returns its output and the activations its hand-written
 * backward needs, and that backward. Blocks map {@code [tokens, hidden]} to {@code [tokens, hidden]}.
 *
 * @param <S> what forward saves; closing it frees the saved activations
 */
public interface Block<S extends AutoCloseable> {

    /** The output and the saved state (null when the backward needs nothing). The output is a new tensor owned by the caller. */
    record Forward<S extends AutoCloseable>(Tensor y, S saved) {
    }

    /** Runs forward on x (not consumed; x must stay alive while the saved state is in use). */
    Forward<S> forward(Tensor x, BatchContext ctx);

    /**
     * Returns a new dX for dY and accumulates parameter gradients. Does not close {@code saved} or {@code dy}.
     */
    Tensor backward(Tensor dy, S saved, BatchContext ctx);

    /**
     * {@link #backward} where nothing needs dX (the first block of a model whose embeddings are frozen): accumulates the
     * parameter gradients only. This default forms dX and frees it; a block may skip the work that only dX needs.
     */
    default void backwardParametersOnly(Tensor dy, S saved, BatchContext ctx) {
        backward(dy, saved, ctx).close();
    }

    /**
     * Selective checkpointing: a checkpointed block's saved state is handed over right after its forward; the block
     * keeps what recomputing would cost more than its memory (owned by the returned object; null = nothing) and
     * frees the rest. Default: keeps nothing.
     */
    default AutoCloseable keepForRecompute(S saved) {
        try {
            saved.close();
        } catch (Exception e) {
            throw new IllegalStateException("closing saved activations failed", e);
        }
        return null;
    }

    /**
     * The saved state again, for backward, reusing what {@link #keepForRecompute} kept (null if nothing; ownership
     * passes to the result). The block's output is not needed then (the next block's input was kept), so a block
     * may skip the work that only the output needs.
     */
    default S recompute(Tensor x, AutoCloseable kept, BatchContext ctx) {
        Forward<S> f = forward(x, ctx);
        f.y().close();
        return f.saved();
    }
}
