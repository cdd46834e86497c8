package dev.jsloth.api.autograd;

import dev.jsloth.api.Tensor;

/**
 * What every block of one forward/backward pass shares about the batch: its size, the rotary tables for each
 * token ({@code [batch*seq, headDim/2]}), and the optional packed-sequence segment ids (I32 {@code [batch, seq]};
 * null = one sequence per row). The context does not own these tensors.
 */
public record BatchContext(int batch, int seq, Tensor ropeCos, Tensor ropeSin, Tensor segments) {
    public int tokens() {
        return batch * seq;
    }
}
