package dev.jsloth.api.blocks;

import dev.jsloth.api.Allocations;
import dev.jsloth.api.Backend;
import dev.jsloth.api.DType;
import dev.jsloth.api.Kernels;
import dev.jsloth.api.Shape;
import dev.jsloth.api.Tensor;
import dev.jsloth.api.autograd.BatchContext;
import dev.jsloth.api.autograd.Block;
import dev.jsloth.api.autograd.ParameterBuffer;
import dev.jsloth.api.ops.Dropout;
import dev.jsloth.api.ops.LoraLinear;
import dev.jsloth.api.ops.SharedInputLora;

import java.util.List;

/**
 * The MLP half of a Llama decoder layer, with LoRA on its projections:
 * <pre>
 *   h = RMSNorm(x; w_post);  g = h Wg^T + LoRA;  u = h Wu^T + LoRA
 *   y = x + (silu(g) * u) Wd^T + LoRA
 * </pre>
 * Backward: {@code da = Ld'(dy)}, SwiGLU backward to dg and du, {@code dh = Lg'(dg) + Lu'(du)}, RMSNorm
 * backward, plus the residual dy. Gate and up read the same h: with their A matrices stacked, their rank-r products
 * are formed together ({@link SharedInputLora}).
 */
public final class LoraMlpBlock implements Block<LoraMlpBlock.Saved> {
    private final Tensor postNorm;
    private final double eps;
    private final SharedInputLora gateUp;
    private final LoraLinear down;

    public LoraMlpBlock(Tensor postNorm, double eps, LoraLinear gate, LoraLinear up, LoraLinear down) {
        this(postNorm, eps, gate, up, down, null);
    }

    /** {@code gateUpA}: the A matrices of gate and up end to end (null: each forms its rank-r product alone). */
    public LoraMlpBlock(Tensor postNorm, double eps, LoraLinear gate, LoraLinear up, LoraLinear down, ParameterBuffer.Stack gateUpA) {
        if (gate.outFeatures() != up.outFeatures() || down.inFeatures() != gate.outFeatures())
            throw new IllegalArgumentException("gate/up/down projection sizes do not agree");
        this.postNorm = postNorm;
        this.eps = eps;
        this.gateUp = new SharedInputLora(List.of(gate, up), gateUpA);
        this.down = down;
    }

    /** Activations kept for backward; closing frees those the block allocated (x is the caller's). */
    public record Saved(Tensor x, Tensor h, Tensor rstd, SharedInputLora.Saved gus, Tensor g, Tensor u, Tensor act,
                        LoraLinear.Saved ds) implements AutoCloseable {
        @Override
        public void close() {
            gus.close();
            ds.close();
            for (Tensor t : new Tensor[]{h, rstd, g, u, act}) t.close();
        }
    }

    @Override
    public Forward<Saved> forward(Tensor x, BatchContext ctx) {
        return run(x, true, null, ctx);
    }

    /**
     * The three projections' rank-r products (gate and up's stacked or each their own, down's {@code [tokens, r]};
     * null where a projection has no adapter), kept across checkpointing: a few hundred KB per layer, where forming
     * them again reads the MLP's input and the SwiGLU output (tokens x intermediate) once more.
     */
    public record KeptProducts(SharedInputLora.Products gateUp, Tensor downXa) implements AutoCloseable {
        @Override
        public void close() {
            gateUp.close();
            if (downXa != null) downXa.close();
        }
    }

    /** Keeps the rank-r products ({@link #keep}). */
    @Override
    public AutoCloseable keepForRecompute(Saved s) {
        return keep(s);
    }

    /**
     * Takes over a forward's saved state: hands the three rank-r products to the result (no copies) and frees the
     * rest. Returns null when no projection has an adapter.
     */
    public KeptProducts keep(Saved s) {
        SharedInputLora.Products gu = s.gus().takeProducts();
        for (Tensor t : new Tensor[]{s.h(), s.rstd(), s.g(), s.u(), s.act()}) t.close();
        Tensor d = s.ds().takeXa();
        return gu.isEmpty() && d == null ? null : new KeptProducts(gu, d);
    }

    /**
     * The saved state without the output: the down projection's product and the residual add are skipped (the
     * down projection is a third of the MLP's flops), only its rank-r product, which its backward reads, is formed
     * (or taken from {@code kept}, a {@link KeptProducts} whose ownership passes on, with the gate and up ones).
     */
    @Override
    public Saved recompute(Tensor x, AutoCloseable kept, BatchContext ctx) {
        return run(x, false, (KeptProducts) kept, ctx).saved();
    }

    private Forward<Saved> run(Tensor x, boolean output, KeptProducts kept, BatchContext ctx) {
        Dropout.Pass dropout = ctx.dropout();
        Backend be = x.backend();
        Kernels kern = be.kernels();
        DType dt = x.dtype();
        int n = Math.toIntExact(x.shape().rows());
        try (Allocations made = new Allocations()) { // a failure frees what this made
            Tensor h = made.add(be.allocateForOverwrite(dt, Shape.of(n, x.shape().cols())));
            Tensor rstd = made.add(be.allocateForOverwrite(dt, Shape.of(n)));
            kern.rmsNormForward(x, postNorm, eps, h, rstd);
            SharedInputLora.Forward f = kept == null ? gateUp.forwardSaving(h, dropout) : gateUp.forwardSavingWith(h, kept.gateUp(), dropout);
            made.add(f.saved());
            made.addAll(f.ys());
            Tensor g = f.ys().get(0), u = f.ys().get(1);
            Tensor act = made.add(be.allocateForOverwrite(dt, g.shape()));
            kern.swigluForward(g, u, act);
            if (!output) {
                LoraLinear.Saved ds = kept == null ? down.saveForBackward(act, dropout) : down.savedWith(act, kept.downXa(), dropout);
                return made.handOver(new Forward<>(null, new Saved(x, h, rstd, f.saved(), g, u, act, ds)));
            }
            LoraLinear.Forward fd = down.forwardSavingPlus(act, x, dropout);
            return made.handOver(new Forward<>(fd.y(), new Saved(x, h, rstd, f.saved(), g, u, act, fd.saved())));
        }
    }

    @Override
    public Tensor backward(Tensor dy, Saved s, BatchContext ctx) {
        Backend be = dy.backend();
        Kernels kern = be.kernels();
        try (Allocations made = new Allocations();
             Tensor dAct = down.backward(dy, s.ds());
             Tensor dg = be.allocateForOverwrite(dy.dtype(), s.g().shape());
             Tensor du = be.allocateForOverwrite(dy.dtype(), s.u().shape())) {
            Tensor dx = made.add(be.allocateForOverwrite(dy.dtype(), Shape.of(Math.toIntExact(s.x().shape().rows()), s.x().shape().cols())));
            kern.swigluBackward(dAct, s.g(), s.u(), dg, du);
            try (Tensor dh = gateUp.backward(List.of(dg, du), s.gus())) {
                kern.rmsNormBackwardWithResidual(dh, s.x(), postNorm, s.rstd(), dy, dx, null);
            }
            return made.handOver(dx);
        }
    }
}
