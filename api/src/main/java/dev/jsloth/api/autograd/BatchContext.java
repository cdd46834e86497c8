package dev.jsloth.api.autograd;

import dev.jsloth.api.Tensor;

/**
 * What every block of one forward/backward pass shares about the batch: its size, the rotary tables for each
 * token ({@code [batch*seq, headDim/2]}), the optional packed-sequence segment ids (I32 {@code [batch, seq]};
 * null = one sequence per row), and the pass's dropout seed ({@code 0}: no dropout, as in evaluation and inference;
 * else each adapter with a dropout probability draws its masks from it, {@link dev.jsloth.api.ops.Dropout}). A
 * recompute under gradient checkpointing runs with the same context, so it draws the same masks. The context does not
 * own these tensors.
 */
public record BatchContext(int batch, int seq, Tensor ropeCos, Tensor ropeSin, Tensor segments, long dropoutSeed) {
    /** A context without dropout. */
    public BatchContext(int batch, int seq, Tensor ropeCos, Tensor ropeSin, Tensor segments) {
        this(batch, seq, ropeCos, ropeSin, segments, 0L);
    }

    public int tokens() {
        return batch * seq;
    }

    /** This context with another dropout seed (0: none). */
    public BatchContext withDropoutSeed(long seed) {
        return new BatchContext(batch, seq, ropeCos, ropeSin, segments, seed);
    }
}
