package dev.jsloth.api.autograd;

import dev.jsloth.api.Tensor;
import dev.jsloth.api.ops.Dropout;

/**
 * What every block of one forward/backward pass shares about the batch: its size, the rotary tables for each
 * token ({@code [batch*seq, headDim/2]}), the optional packed-sequence segment ids (I32 {@code [batch, seq]};
 * null = one sequence per row), and the pass's LoRA dropout ({@link Dropout.Pass#NONE} in evaluation and inference;
 * else each adapter with a dropout probability draws its masks from it, {@link Dropout}). A recompute under gradient
 * checkpointing runs with the same context, so it draws the same masks. The context does not own these tensors.
 */
public record BatchContext(int batch, int seq, Tensor ropeCos, Tensor ropeSin, Tensor segments, Dropout.Pass dropout) {
    /** A context without dropout. */
    public BatchContext(int batch, int seq, Tensor ropeCos, Tensor ropeSin, Tensor segments) {
        this(batch, seq, ropeCos, ropeSin, segments, Dropout.Pass.NONE);
    }

    public BatchContext {
        java.util.Objects.requireNonNull(dropout, "dropout (Dropout.Pass.NONE for none)");
    }

    public int tokens() {
        return batch * seq;
    }

    /** This context with another dropout pass. */
    public BatchContext withDropout(Dropout.Pass pass) {
        return new BatchContext(batch, seq, ropeCos, ropeSin, segments, pass);
    }

    /** This context with dropout seed {@code seed} (0: none) from its first token on. */
    public BatchContext withDropoutSeed(long seed) {
        return withDropout(new Dropout.Pass(seed, 0));
    }
}
