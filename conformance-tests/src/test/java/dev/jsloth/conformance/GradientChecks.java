package dev.jsloth.conformance;

import dev.jsloth.api.AttentionDims;
import dev.jsloth.api.Backend;
import dev.jsloth.api.DType;
import dev.jsloth.api.Kernels;
import dev.jsloth.api.Shape;
import dev.jsloth.api.Tensor;
import dev.jsloth.api.autograd.BatchContext;
import dev.jsloth.api.autograd.Parameter;
import dev.jsloth.api.autograd.ParameterBuffer;
import dev.jsloth.api.autograd.Tape;
import dev.jsloth.api.blocks.DecoderLayer;
import dev.jsloth.api.blocks.LoraAttentionBlock;
import dev.jsloth.api.blocks.LoraMlpBlock;
import dev.jsloth.api.gradcheck.GradCheck;
import dev.jsloth.api.gradcheck.GradCheck.Input;
import dev.jsloth.api.ops.CrossEntropy;
import dev.jsloth.api.ops.LoraLinear;
import dev.jsloth.api.ops.RopeTables;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;
import java.util.function.Function;
import java.util.function.Supplier;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Every op's hand-derived backward, and a whole LoRA decoder layer, against central finite differences with
 * the public {@link GradCheck}, on the CPU reference backend in F64.
 */
class GradientChecks {
    private static final Backend BE = BackendsUnderTest.cpu();
    private static final Kernels K = BE.kernels();
    private static final DType F64 = DType.F64;
    private static final GradCheck.Options OPTIONS = GradCheck.Options.defaults();
    private static double largestRelativeError;

    private final SplittableRandom rnd = new SplittableRandom(42);
    private final List<AutoCloseable> toClose = new ArrayList<>();

    private Tensor rand(double lo, double hi, int... dims) {
        Shape s = Shape.of(dims);
        Tensor t = BE.upload(F64, s, TestData.uniform(rnd, Math.toIntExact(s.numel()), lo, hi));
        toClose.add(t);
        return t;
    }

    private Tensor alloc(int... dims) {
        return BE.allocate(F64, dims);
    }

    /** A GradCheck function from a forward and a backward lambda. */
    private static GradCheck.Function fn(List<Input> inputs, Supplier<Tensor> forward, Function<Tensor, List<Tensor>> backward) {
        return new GradCheck.Function() {
            @Override
            public List<Input> inputs() {
                return inputs;
            }

            @Override
            public Tensor forward() {
                return forward.get();
            }

            @Override
            public List<Tensor> backward(Tensor dy) {
                return backward.apply(dy);
            }
        };
    }

    private void assertPasses(String what, GradCheck.Function f) {
        assertPasses(what, f, OPTIONS);
    }

    private void assertPasses(String what, GradCheck.Function f, GradCheck.Options o) {
        try {
            GradCheck.Report r = GradCheck.check(f, o);
            synchronized (GradientChecks.class) {
                largestRelativeError = Math.max(largestRelativeError, r.maxRelError());
            }
            System.out.printf(Locale.ROOT, "[gradcheck] %-32s max abs err %.3e, max rel err %.3e%n", what, r.maxAbsError(), r.maxRelError());
            assertTrue(r.passed(), what + ": " + r);
        } finally {
            closeAll();
        }
    }

    /** Closes every tensor, parameter and buffer a check opened. */
    private void closeAll() {
        for (AutoCloseable c : toClose) {
            try {
                c.close();
            } catch (Exception e) {
                throw new RuntimeException(e);
            }
        }
        toClose.clear();
    }

    /**
     * GradCheck itself fails wrong backwards: a gradient off by a factor, a gradient left out (null) for an input that
     * changes y; it refuses inputs it cannot check (F32), and leaves the inputs as they were when forward throws midway.
     * The function: y = (x + w) * 3, so dx = dw = 3 dy.
     */
    @Test
    void gradCheckFailsWrongBackwardsAndRefusesWhatItCannotCheck() {
        Tensor x = rand(-1, 1, 4, 5), w = rand(-1, 1, 4, 5);
        double[] x0 = BE.download(x);
        java.util.function.BiFunction<Double, Boolean, GradCheck.Function> op = (factor, dropW) -> fn(List.of(new Input("x", x), new Input("w", w)), () -> {
            Tensor y = alloc(4, 5);
            K.add(x, w, y);
            K.scale(y, 3);
            return y;
        }, dy -> {
            Tensor dx = alloc(4, 5), dw = alloc(4, 5);
            K.copy(dy, dx);
            K.scale(dx, 3);
            K.copy(dy, dw);
            K.scale(dw, 3 * factor);
            if (dropW) {
                dw.close();
                return java.util.Arrays.asList(dx, null);
            }
            return List.of(dx, dw);
        });
        assertTrue(GradCheck.check(op.apply(1.0, false), OPTIONS).passed());
        GradCheck.Report doubled = GradCheck.check(op.apply(2.0, false), OPTIONS);
        assertFalse(doubled.passed());
        assertTrue(doubled.toString().contains("w ") && doubled.toString().contains("FAIL"), doubled.toString());
        GradCheck.Report missing = GradCheck.check(op.apply(1.0, true), OPTIONS);
        assertFalse(missing.passed(), missing.toString());
        assertTrue(missing.toString().contains("w (no gradient returned)"), missing.toString());
        try (Tensor f32 = BE.upload(DType.F32, Shape.of(3), new double[]{1, 2, 3})) {
            var e = org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class, () -> GradCheck.check(
                    fn(List.of(new Input("h", f32)), () -> BE.upload(DType.F32, Shape.of(1), new double[1]), dy -> java.util.Arrays.asList((Tensor) null)), OPTIONS));
            assertTrue(e.getMessage().contains("h is F32"), e.getMessage());
        }
        int[] calls = {0};
        GradCheck.Function throwing = fn(List.of(new Input("x", x)), () -> {
            if (++calls[0] == 4) throw new IllegalStateException("forward failed");
            Tensor y = alloc(4, 5);
            K.copy(x, y);
            return y;
        }, dy -> {
            Tensor dx = alloc(4, 5);
            K.copy(dy, dx);
            return List.of(dx);
        });
        org.junit.jupiter.api.Assertions.assertThrows(IllegalStateException.class, () -> GradCheck.check(throwing, OPTIONS));
        assertArrayEquals(x0, BE.download(x), 0.0, "x holds its own values again");
        closeAll();
    }

    @AfterAll
    static void summary() {
        System.out.printf(Locale.ROOT, "[gradcheck] largest relative error over all checks: %.3e%n", largestRelativeError);
    }

    @Test
    void rmsNorm() {
        int n = 5, d = 13;
        Tensor x = rand(-2, 2, n, d), w = rand(0.5, 1.5, d);
        assertPasses("rmsnorm", fn(List.of(new Input("x", x), new Input("weight", w)), () -> {
            Tensor y = alloc(n, d);
            try (Tensor rstd = alloc(n)) {
                K.rmsNormForward(x, w, 1e-5, y, rstd);
            }
            return y;
        }, dy -> {
            Tensor dx = alloc(n, d), dw = alloc(d);
            try (Tensor y = alloc(n, d); Tensor rstd = alloc(n)) {
                K.rmsNormForward(x, w, 1e-5, y, rstd);
                K.rmsNormBackward(dy, x, w, rstd, dx, dw);
            }
            return List.of(dx, dw);
        }));
    }

    @Test
    void rope() {
        int n = 6, heads = 3, hd = 8;
        Tensor x = rand(-2, 2, n, heads * hd);
        int[] pos = {0, 1, 2, 7, 3, 100};
        try (RopeTables.Tables t = RopeTables.compute(BE, F64, RopeTables.Config.standard(10000), hd, pos)) {
            assertPasses("rope", fn(List.of(new Input("x", x)), () -> {
                Tensor y = alloc(n, heads * hd);
                K.copy(x, y);
                K.rope(y, t.cos(), t.sin(), heads, false);
                return y;
            }, dy -> {
                Tensor dx = alloc(n, heads * hd);
                K.copy(dy, dx);
                K.rope(dx, t.cos(), t.sin(), heads, true);
                return java.util.Collections.singletonList(dx);
            }));
        }
    }

    @Test
    void swiglu() {
        int n = 37;
        Tensor g = rand(-5, 5, n), u = rand(-2, 2, n);
        assertPasses("swiglu", fn(List.of(new Input("gate", g), new Input("up", u)), () -> {
            Tensor y = alloc(n);
            K.swigluForward(g, u, y);
            return y;
        }, dy -> {
            Tensor dg = alloc(n), du = alloc(n);
            K.swigluBackward(dy, g, u, dg, du);
            return List.of(dg, du);
        }));
    }

    private void checkAttention(String what, int[] segments) {
        int batch = 2, seq = 7, hq = 6, hkv = 2, hd = 4;
        AttentionDims d = new AttentionDims(batch, seq, hq, hkv, hd);
        Tensor q = rand(-1.5, 1.5, batch, seq, hq, hd), k = rand(-1.5, 1.5, batch, seq, hkv, hd), v = rand(-1, 1, batch, seq, hkv, hd);
        Tensor seg = segments == null ? null : BE.uploadInts(Shape.of(batch, seq), segments);
        if (seg != null) toClose.add(seg);
        double scale = 1 / Math.sqrt(hd);
        assertPasses(what, fn(List.of(new Input("q", q), new Input("k", k), new Input("v", v)), () -> {
            Tensor out = alloc(batch, seq, hq, hd);
            try (Tensor lse = alloc(batch, hq, seq)) {
                K.attentionForward(d, q, k, v, seg, scale, out, lse);
            }
            return out;
        }, dy -> {
            Tensor dq = alloc(batch, seq, hq, hd), dk = alloc(batch, seq, hkv, hd), dv = alloc(batch, seq, hkv, hd);
            try (Tensor out = alloc(batch, seq, hq, hd); Tensor lse = alloc(batch, hq, seq)) {
                K.attentionForward(d, q, k, v, seg, scale, out, lse);
                K.attentionBackward(d, dy, q, k, v, seg, scale, out, lse, dq, dk, dv);
            }
            return List.of(dq, dk, dv);
        }));
    }

    @Test
    void causalGqaAttention() {
        checkAttention("attention (GQA 6/2)", null);
    }

    @Test
    void packedAttention() {
        checkAttention("attention (packed)", new int[]{0, 0, 0, 1, 1, 2, 2, 5, 5, 5, 5, 6, 6, 6});
    }

    @Test
    void crossEntropy() {
        int n = 4, vocab = 11;
        Tensor logits = rand(-3, 3, n, vocab);
        int[] y = {3, CrossEntropy.IGNORE_INDEX, 0, 10};
        Tensor labels = BE.uploadInts(Shape.of(n), y);
        toClose.add(labels);
        assertPasses("cross-entropy", fn(List.of(new Input("logits", logits)), () -> {
            try (Tensor loss = alloc(n); Tensor lse = alloc(n)) {
                K.crossEntropyForward(logits, labels, CrossEntropy.IGNORE_INDEX, loss, lse);
                double s = 0;
                for (double v : BE.download(loss)) s += v;
                return BE.upload(F64, Shape.of(1), new double[]{s});
            }
        }, dy -> {
            Tensor d = alloc(n, vocab);
            try (Tensor loss = alloc(n); Tensor lse = alloc(n)) {
                K.crossEntropyForward(logits, labels, CrossEntropy.IGNORE_INDEX, loss, lse);
                K.crossEntropyBackward(logits, labels, lse, CrossEntropy.IGNORE_INDEX, BE.download(dy)[0], d);
            }
            return java.util.Collections.singletonList(d);
        }));
    }

    @Test
    void fusedHeadCrossEntropy() {
        int n = 7, dim = 6, vocab = 19;
        Tensor h = rand(-1, 1, n, dim), w = rand(-1, 1, vocab, dim);
        int[] y = {1, 2, CrossEntropy.IGNORE_INDEX, 18, 0, 5, 5};
        assertPasses("lm-head cross-entropy", fn(List.of(new Input("hidden", h)), () -> {
            CrossEntropy.Result r = CrossEntropy.lmHead(h, w, y, false, 0, 3);
            return BE.upload(F64, Shape.of(1), new double[]{r.lossSum()});
        }, dy -> java.util.Collections.singletonList(CrossEntropy.lmHead(h, w, y, true, BE.download(dy)[0], 3).dHidden())));
    }

    @Test
    void embedding() {
        int vocab = 5, dim = 4;
        Tensor table = rand(-1, 1, vocab, dim);
        Tensor ids = BE.uploadInts(Shape.of(6), new int[]{0, 3, 3, 1, 4, 3});
        toClose.add(ids);
        assertPasses("embedding", fn(List.of(new Input("table", table)), () -> {
            Tensor out = alloc(6, dim);
            K.embeddingForward(table, ids, out);
            return out;
        }, dy -> {
            Tensor d = alloc(vocab, dim);
            K.embeddingBackward(dy, ids, d);
            return java.util.Collections.singletonList(d);
        }));
    }

    @Test
    void loraLinear() {
        int n = 5, in = 7, out = 6, r = 3;
        Tensor x = rand(-1, 1, n, in), w = rand(-1, 1, out, in), bias = rand(-1, 1, out);
        Parameter a = new Parameter("A", rand(-1, 1, r, in)), b = new Parameter("B", rand(-1, 1, out, r));
        LoraLinear layer = new LoraLinear(w, bias, a, b, LoraLinear.scaling(8, r, true));
        assertPasses("lora linear", fn(List.of(new Input("x", x), new Input("A", a.value()), new Input("B", b.value())),
                () -> layer.forward(x), dy -> {
                    a.zeroGrad();
                    b.zeroGrad();
                    LoraLinear.Forward f = layer.forwardSaving(x);
                    f.y().close();
                    try (LoraLinear.Saved s = f.saved()) {
                        Tensor dx = layer.backward(dy, s);
                        return List.of(dx, copyOf(a.grad()), copyOf(b.grad()));
                    }
                }));
        a.grad().close();
        b.grad().close();
    }

    private static Tensor copyOf(Tensor t) {
        Tensor c = BE.allocate(t.dtype(), t.shape());
        K.copy(t, c);
        return c;
    }

    /** A small GQA decoder layer with LoRA on all seven projections and non-zero A and B. */
    private record Layer(DecoderLayer layer, List<Parameter> params) {
    }

    private Layer randomLayer(int hidden, int qHeads, int kvHeads, int headDim, int inter, int r) {
        List<Parameter> params = new ArrayList<>();
        double s = LoraLinear.scaling(2 * r, r, false);
        Function<int[], LoraLinear> proj = dims -> {
            int out = dims[0], in = dims[1];
            Parameter a = new Parameter("A", rand(-0.5, 0.5, r, in)), b = new Parameter("B", rand(-0.5, 0.5, out, r));
            params.add(a);
            params.add(b);
            return new LoraLinear(rand(-0.4, 0.4, out, in), null, a, b, s);
        };
        LoraAttentionBlock attn = new LoraAttentionBlock(rand(0.8, 1.2, hidden), 1e-6,
                proj.apply(new int[]{qHeads * headDim, hidden}), proj.apply(new int[]{kvHeads * headDim, hidden}),
                proj.apply(new int[]{kvHeads * headDim, hidden}), proj.apply(new int[]{hidden, qHeads * headDim}),
                qHeads, kvHeads, headDim);
        LoraMlpBlock mlp = new LoraMlpBlock(rand(0.8, 1.2, hidden), 1e-6, proj.apply(new int[]{inter, hidden}),
                proj.apply(new int[]{inter, hidden}), proj.apply(new int[]{hidden, inter}));
        return new Layer(new DecoderLayer(attn, mlp), params);
    }

    /**
     * A decoder layer with LoRA on all seven projections at the ranks given (q, k, v, o, gate, up, down), values from
     * {@code seed}; {@code stacked}: the parameters in one buffer with q/k/v's and gate/up's A matrices end to end, so
     * the blocks form those rank-r products stacked ({@link dev.jsloth.api.ops.SharedInputLora}). The same seed gives
     * the same values either way. Parameters in the order tapeFunction names them.
     */
    private Layer layerWithRanks(int hidden, int qHeads, int kvHeads, int headDim, int inter, int[] ranks, boolean stacked, long seed) {
        return layerWithRanks(hidden, qHeads, kvHeads, headDim, inter, ranks, stacked, seed, 0.0);
    }

    /** {@link #layerWithRanks} with LoRA dropout {@code dropout} on every adapter (projection j: dropout stream j). */
    private Layer layerWithRanks(int hidden, int qHeads, int kvHeads, int headDim, int inter, int[] ranks, boolean stacked, long seed,
                                 double dropout) {
        SplittableRandom values = new SplittableRandom(seed);
        int[][] shapes = {{qHeads * headDim, hidden}, {kvHeads * headDim, hidden}, {kvHeads * headDim, hidden},
                {hidden, qHeads * headDim}, {inter, hidden}, {inter, hidden}, {hidden, inter}};
        List<Parameter> params = new ArrayList<>();
        Tensor[] weights = new Tensor[7];
        int[] firstParam = new int[7]; // projection j's A in params (B follows it); rank 0: no adapter
        for (int j = 0; j < 7; j++) {
            int out = shapes[j][0], in = shapes[j][1], r = ranks[j];
            weights[j] = upload(values, -0.4, 0.4, out, in);
            firstParam[j] = params.size();
            if (r == 0) continue;
            // not in toClose: the buffer takes them over (stacked), or the parameters are closed whole
            params.add(new Parameter("A", BE.upload(F64, Shape.of(r, in), TestData.uniform(values, r * in, -0.5, 0.5))));
            params.add(new Parameter("B", BE.upload(F64, Shape.of(out, r), TestData.uniform(values, out * r, -0.5, 0.5))));
        }
        // as the model stacks them: a group's A matrices end to end where every projection of the group is adapted
        List<int[]> groups = new ArrayList<>();
        for (int[] group : new int[][]{{0, 1, 2}, {4, 5}})
            if (stacked && java.util.Arrays.stream(group).allMatch(j -> ranks[j] > 0)) groups.add(group);
        ParameterBuffer.Stack[] stacks = new ParameterBuffer.Stack[2];
        if (!groups.isEmpty()) {
            List<Parameter> order = new ArrayList<>();
            for (int[] group : groups) for (int j : group) order.add(params.get(firstParam[j]));
            for (Parameter p : params) if (!order.contains(p)) order.add(p);
            ParameterBuffer buf = ParameterBuffer.of(order);
            toClose.add(buf);
            List<Parameter> moved = new ArrayList<>();
            for (Parameter p : params) moved.add(buf.parameters().get(order.indexOf(p)));
            params = moved;
            for (int[] group : groups) {
                List<Parameter> as = new ArrayList<>();
                for (int j : group) as.add(params.get(firstParam[j]));
                stacks[group.length == 3 ? 0 : 1] = buf.stack(as);
                assertTrue(stacks[group.length == 3 ? 0 : 1] != null, "the A matrices lie end to end");
            }
        } else {
            for (Parameter p : params) toClose.add(p);
        }
        ParameterBuffer.Stack qkv = stacks[0], gateUp = stacks[1];
        LoraLinear[] proj = new LoraLinear[7];
        for (int j = 0; j < 7; j++)
            proj[j] = ranks[j] == 0 ? new LoraLinear(weights[j], null)
                    : new LoraLinear(weights[j], null, params.get(firstParam[j]), params.get(firstParam[j] + 1), LoraLinear.scaling(2 * ranks[j], ranks[j], false),
                    dropout, j);
        LoraAttentionBlock attn = new LoraAttentionBlock(upload(values, 0.8, 1.2, hidden), 1e-6, proj[0], proj[1], proj[2], proj[3],
                qHeads, kvHeads, headDim, qkv);
        LoraMlpBlock mlp = new LoraMlpBlock(upload(values, 0.8, 1.2, hidden), 1e-6, proj[4], proj[5], proj[6], gateUp);
        return new Layer(new DecoderLayer(attn, mlp), params);
    }

    private Tensor upload(SplittableRandom values, double lo, double hi, int... dims) {
        Shape s = Shape.of(dims);
        Tensor t = BE.upload(F64, s, TestData.uniform(values, Math.toIntExact(s.numel()), lo, hi));
        toClose.add(t);
        return t;
    }

    /** Q/K/V and gate/up with stacked A matrices (unequal ranks, packed sequences): finite differences. */
    @Test
    void stackedSharedInputLoraLayer() {
        checkStackedLayer(false);
    }

    /** The same through a checkpointed tape (the rank-r products kept, the forward run again). */
    @Test
    void stackedSharedInputLoraLayerCheckpointed() {
        checkStackedLayer(true);
    }

    private void checkStackedLayer(boolean checkpointing) {
        int batch = 2, seq = 5, hidden = 16, qh = 4, kvh = 2, hd = 4, inter = 24;
        int[] ranks = {2, 3, 1, 2, 2, 3, 1};
        Layer l = layerWithRanks(hidden, qh, kvh, hd, inter, ranks, true, 7);
        BatchContext ctx = context(batch, seq, hd, new int[]{0, 0, 0, 1, 1, 0, 0, 0, 0, 0});
        Tensor x = rand(-1, 1, batch * seq, hidden);
        assertPasses("decoder layer, stacked A" + (checkpointing ? ", ckpt" : ""),
                tapeFunction(List.of(l.layer()), l.params(), x, ctx, checkpointing), OPTIONS.withMaxElements(checkpointing ? 12 : 24));
    }

    /**
     * Stacked and separate rank-r products are the same sums grouped differently: outputs and every gradient agree to
     * F64 rounding, under every checkpointing policy.
     */
    @Test
    void stackedMatchesSeparateProducts() {
        int batch = 2, seq = 6, hidden = 16, qh = 4, kvh = 2, hd = 4, inter = 24;
        int[] ranks = {3, 2, 2, 2, 4, 1, 2};
        Layer stacked = layerWithRanks(hidden, qh, kvh, hd, inter, ranks, true, 11);
        Layer separate = layerWithRanks(hidden, qh, kvh, hd, inter, ranks, false, 11);
        BatchContext ctx = context(batch, seq, hd, null);
        Tensor x = rand(-1, 1, batch * seq, hidden);
        Tensor dy = rand(-1, 1, batch * seq, hidden);
        List<double[]> want = grads(tapeFunction(List.of(separate.layer()), separate.params(), x, ctx, false), dy);
        for (dev.jsloth.api.blocks.Recompute policy : dev.jsloth.api.blocks.Recompute.values()) {
            stacked.layer().recompute(policy);
            for (boolean ckpt : new boolean[]{false, true}) {
                List<double[]> got = grads(tapeFunction(List.of(stacked.layer()), stacked.params(), x, ctx, ckpt), dy);
                assertEquals(want.size(), got.size());
                for (int i = 0; i < want.size(); i++) {
                    double scale = 0;
                    for (double v : want.get(i)) scale = Math.max(scale, Math.abs(v));
                    assertArrayEquals(want.get(i), got.get(i), 1e-12 * Math.max(1, scale), policy + (ckpt ? ", checkpointed" : "") + ": gradient " + i);
                }
            }
        }
    }

    private GradCheck.Function tapeFunction(List<DecoderLayer> layers, List<Parameter> params, Tensor x, BatchContext ctx, boolean checkpointing) {
        List<Input> inputs = new ArrayList<>();
        inputs.add(new Input("x", x));
        String[] names = {"q", "k", "v", "o", "gate", "up", "down"};
        for (int i = 0; i < params.size(); i++) {
            int proj = (i / 2) % 7;
            inputs.add(new Input("layer" + (i / 14) + "." + names[proj] + (i % 2 == 0 ? ".lora_A" : ".lora_B"), params.get(i).value()));
        }
        return fn(inputs, () -> {
            try (Tape tape = new Tape(ctx, checkpointing)) {
                Tensor h = x;
                for (DecoderLayer l : layers) h = tape.forward(l, h);
                return copyOf(h);
            }
        }, dy -> {
            for (Parameter p : params) p.zeroGrad();
            List<Tensor> grads = new ArrayList<>();
            try (Tape tape = new Tape(ctx, checkpointing)) {
                Tensor h = x;
                for (DecoderLayer l : layers) h = tape.forward(l, h);
                grads.add(tape.backward(dy));
            }
            for (Parameter p : params) grads.add(copyOf(p.grad()));
            return grads;
        });
    }

    private BatchContext context(int batch, int seq, int headDim, int[] segments) {
        int[] pos = new int[batch * seq];
        for (int b = 0; b < batch; b++) {
            for (int t = 0; t < seq; t++) {
                boolean restart = segments != null && t > 0 && segments[b * seq + t] != segments[b * seq + t - 1];
                pos[b * seq + t] = segments == null || t == 0 ? t : (restart ? 0 : pos[b * seq + t - 1] + 1);
            }
        }
        RopeTables.Tables tables = RopeTables.compute(BE, F64, RopeTables.Config.standard(10000), headDim, pos);
        toClose.add(tables);
        Tensor seg = segments == null ? null : BE.uploadInts(Shape.of(batch, seq), segments);
        if (seg != null) toClose.add(seg);
        return new BatchContext(batch, seq, tables.cos(), tables.sin(), seg);
    }

    @Test
    void wholeLoraDecoderLayer() {
        int batch = 2, seq = 5, hidden = 16, qh = 4, kvh = 2, hd = 4, inter = 24, r = 2;
        Layer l = randomLayer(hidden, qh, kvh, hd, inter, r);
        BatchContext ctx = context(batch, seq, hd, null);
        Tensor x = rand(-1, 1, batch * seq, hidden);
        assertPasses("decoder layer (LoRA x7, GQA)", tapeFunction(List.of(l.layer()), l.params(), x, ctx, false),
                OPTIONS.withMaxElements(24));
    }

    @Test
    void twoLayersWithCheckpointingAndPackedSequences() {
        int batch = 1, seq = 8, hidden = 12, qh = 3, kvh = 1, hd = 4, inter = 20, r = 2;
        Layer l0 = randomLayer(hidden, qh, kvh, hd, inter, r), l1 = randomLayer(hidden, qh, kvh, hd, inter, r);
        List<Parameter> params = new ArrayList<>(l0.params());
        params.addAll(l1.params());
        BatchContext ctx = context(batch, seq, hd, new int[]{0, 0, 0, 1, 1, 1, 1, 2});
        Tensor x = rand(-1, 1, batch * seq, hidden);
        assertPasses("2 layers, checkpointed, packed", tapeFunction(List.of(l0.layer(), l1.layer()), params, x, ctx, true),
                OPTIONS.withMaxElements(12));
    }

    /** Checkpointing changes memory, not maths: gradients are bit-identical with and without it, whatever it recomputes. */
    @Test
    void checkpointingGivesIdenticalGradients() {
        int batch = 2, seq = 6, hidden = 16, qh = 4, kvh = 2, hd = 4, inter = 24, r = 4;
        Layer l0 = randomLayer(hidden, qh, kvh, hd, inter, r), l1 = randomLayer(hidden, qh, kvh, hd, inter, r);
        List<Parameter> params = new ArrayList<>(l0.params());
        params.addAll(l1.params());
        BatchContext ctx = context(batch, seq, hd, null);
        Tensor x = rand(-1, 1, batch * seq, hidden);
        Tensor dy = rand(-1, 1, batch * seq, hidden);
        List<double[]> plain = grads(tapeFunction(List.of(l0.layer(), l1.layer()), params, x, ctx, false), dy);
        for (dev.jsloth.api.blocks.Recompute policy : dev.jsloth.api.blocks.Recompute.values()) {
            l0.layer().recompute(policy);
            l1.layer().recompute(policy);
            List<double[]> ckpt = grads(tapeFunction(List.of(l0.layer(), l1.layer()), params, x, ctx, true), dy);
            for (int i = 0; i < plain.size(); i++) assertArrayEquals(plain.get(i), ckpt.get(i), 0.0, policy + ": gradient " + i);
        }
        long live = BE.memoryStats().liveTensors();
        grads(tapeFunction(List.of(l0.layer(), l1.layer()), params, x, ctx, true), dy);
        assertEquals(live, BE.memoryStats().liveTensors(), "a checkpointed pass frees everything it kept");
        for (Parameter p : params) p.grad().close();
        closeAll();
    }

    /**
     * A tape's backward without the first input's gradient (frozen embeddings: the first layer skips its Q/K/V input
     * products and its norm's backward) leaves every parameter gradient bit-identical, stacked A or not, under every
     * checkpointing policy or none, reports every block (last first) and frees everything it kept.
     */
    @Test
    void parametersOnlyBackwardGivesTheSameParameterGradients() {
        parametersOnlyMatchesFullBackward(new int[]{3, 2, 2, 2, 4, 1, 2}, new boolean[]{false, true});
    }

    /**
     * The same where only some projections carry an adapter (q and v, as PEFT's default targets, plus up; or only
     * down; or none in the layer's first half): the projections without one skip their input products too.
     */
    @Test
    void parametersOnlyBackwardWithAdaptersOnSomeProjections() {
        parametersOnlyMatchesFullBackward(new int[]{2, 0, 3, 0, 0, 1, 0}, new boolean[]{false});
        parametersOnlyMatchesFullBackward(new int[]{0, 0, 0, 0, 0, 0, 2}, new boolean[]{false});
        parametersOnlyMatchesFullBackward(new int[]{0, 0, 0, 0, 2, 2, 1}, new boolean[]{false, true});
    }

    /** A layer with adapters on some projections only (the others frozen, no A or B): finite differences. */
    @Test
    void layerWithAdaptersOnSomeProjections() {
        int batch = 2, seq = 5, hidden = 16, qh = 4, kvh = 2, hd = 4, inter = 24;
        Layer l = layerWithRanks(hidden, qh, kvh, hd, inter, new int[]{2, 0, 3, 0, 0, 1, 0}, false, 23);
        BatchContext ctx = context(batch, seq, hd, new int[]{0, 0, 0, 1, 1, 0, 0, 0, 0, 0});
        Tensor x = rand(-1, 1, batch * seq, hidden);
        assertPasses("decoder layer, LoRA on q, v and up", tapeFunction(List.of(l.layer()), l.params(), x, ctx, false),
                OPTIONS.withMaxElements(24));
    }

    /**
     * LoRA dropout (p = 0.3, each projection its own mask): a layer in a pass with a dropout seed passes finite
     * differences (the masks are a function of the seed, so the function is fixed), stacked A or not.
     */
    @Test
    void layerWithLoraDropout() {
        int batch = 2, seq = 5, hidden = 16, qh = 4, kvh = 2, hd = 4, inter = 24;
        for (boolean stacked : new boolean[]{false, true}) {
            Layer l = layerWithRanks(hidden, qh, kvh, hd, inter, new int[]{2, 3, 1, 2, 2, 1, 3}, stacked, 29, 0.3);
            BatchContext ctx = context(batch, seq, hd, new int[]{0, 0, 0, 1, 1, 0, 0, 0, 0, 0}).withDropoutSeed(0x5EEDL);
            Tensor x = rand(-1, 1, batch * seq, hidden);
            assertPasses("decoder layer, LoRA dropout 0.3" + (stacked ? ", stacked A" : ""),
                    tapeFunction(List.of(l.layer()), l.params(), x, ctx, false), OPTIONS.withMaxElements(24));
        }
    }

    /**
     * With dropout, gradients are bit-identical under every checkpointing policy (a recompute draws the same masks)
     * and without the first input's gradient; a stacked layer gives the same gradients as a separate one (each
     * projection masks its own input, so the pass forms the products one by one either way); a pass without a seed
     * has no dropout, and the same seed twice gives the same gradients while another seed does not.
     */
    @Test
    void loraDropoutIsDeterministicUnderCheckpointing() {
        int[] ranks = {2, 3, 1, 2, 2, 1, 3};
        parametersOnlyMatchesFullBackward(ranks, new boolean[]{false, true}, 0.3, 0x5EEDL);
        int batch = 2, seq = 6, hidden = 16, qh = 4, kvh = 2, hd = 4, inter = 24;
        Layer stacked = layerWithRanks(hidden, qh, kvh, hd, inter, ranks, true, 31, 0.3);
        Layer separate = layerWithRanks(hidden, qh, kvh, hd, inter, ranks, false, 31, 0.3);
        Layer plain = layerWithRanks(hidden, qh, kvh, hd, inter, ranks, false, 31, 0.0);
        BatchContext ctx = context(batch, seq, hd, null);
        Tensor x = rand(-1, 1, batch * seq, hidden);
        Tensor dy = rand(-1, 1, batch * seq, hidden);
        List<double[]> seeded = grads(tapeFunction(List.of(separate.layer()), separate.params(), x, ctx.withDropoutSeed(7), false), dy);
        List<double[]> again = grads(tapeFunction(List.of(separate.layer()), separate.params(), x, ctx.withDropoutSeed(7), false), dy);
        List<double[]> fromStacked = grads(tapeFunction(List.of(stacked.layer()), stacked.params(), x, ctx.withDropoutSeed(7), false), dy);
        List<double[]> other = grads(tapeFunction(List.of(separate.layer()), separate.params(), x, ctx.withDropoutSeed(8), false), dy);
        List<double[]> unseeded = grads(tapeFunction(List.of(separate.layer()), separate.params(), x, ctx, false), dy);
        List<double[]> noDropout = grads(tapeFunction(List.of(plain.layer()), plain.params(), x, ctx.withDropoutSeed(7), false), dy);
        for (int i = 0; i < seeded.size(); i++) {
            assertArrayEquals(seeded.get(i), again.get(i), 0.0, "same seed: gradient " + i);
            assertArrayEquals(seeded.get(i), fromStacked.get(i), 0.0, "stacked: gradient " + i);
            assertArrayEquals(unseeded.get(i), noDropout.get(i), 0.0, "no seed, no dropout: gradient " + i);
            assertFalse(java.util.Arrays.equals(seeded.get(i), other.get(i)), "another seed, other masks: gradient " + i);
            assertFalse(java.util.Arrays.equals(seeded.get(i), unseeded.get(i)), "dropout changes gradient " + i);
        }
        closeAll();
    }

    private void parametersOnlyMatchesFullBackward(int[] ranks, boolean[] stackings) {
        parametersOnlyMatchesFullBackward(ranks, stackings, 0.0, 0L);
    }

    private void parametersOnlyMatchesFullBackward(int[] ranks, boolean[] stackings, double dropout, long dropoutSeed) {
        int batch = 2, seq = 5, hidden = 16, qh = 4, kvh = 2, hd = 4, inter = 24;
        BatchContext ctx = context(batch, seq, hd, new int[]{0, 0, 0, 1, 1, 0, 0, 0, 0, 0}).withDropoutSeed(dropoutSeed);
        Tensor x = rand(-1, 1, batch * seq, hidden);
        Tensor dy = rand(-1, 1, batch * seq, hidden);
        for (boolean stacked : stackings) {
            Layer l0 = layerWithRanks(hidden, qh, kvh, hd, inter, ranks, stacked, 17, dropout);
            Layer l1 = layerWithRanks(hidden, qh, kvh, hd, inter, ranks, stacked, 19, dropout);
            List<Parameter> params = new ArrayList<>(l0.params());
            params.addAll(l1.params());
            List<double[]> full = parameterGradients(List.of(l0.layer(), l1.layer()), params, x, dy, ctx, false, true, null);
            for (dev.jsloth.api.blocks.Recompute policy : dev.jsloth.api.blocks.Recompute.values()) {
                l0.layer().recompute(policy);
                l1.layer().recompute(policy);
                for (boolean ckpt : new boolean[]{false, true}) {
                    long live = BE.memoryStats().liveTensors();
                    List<Integer> reported = new ArrayList<>();
                    List<double[]> only = parameterGradients(List.of(l0.layer(), l1.layer()), params, x, dy, ctx, ckpt, false, reported::add);
                    assertEquals(live, BE.memoryStats().liveTensors(), "a parameters-only backward frees everything it kept");
                    assertEquals(List.of(1, 0), reported, "every block reported, last first");
                    for (int i = 0; i < full.size(); i++)
                        assertArrayEquals(full.get(i), only.get(i), 0.0,
                                java.util.Arrays.toString(ranks) + ", " + (stacked ? "stacked, " : "") + (ckpt ? "checkpointed " + policy + ", " : "") + "parameter " + i);
                }
            }
        }
        closeAll(); // the parameters (or their buffers), weights and inputs
    }

    /**
     * A device that runs out of memory at any one allocation of a two-layer step (forward, keep, recompute, backward;
     * every checkpointing policy, stacked or not, with and without dropout, full or parameters-only backward) leaves
     * nothing of the failed step alive once the tape closes: an application that catches the failure and retries
     * smaller finds its memory as it was.
     */
    @Test
    void outOfMemoryAnywhereInAStepLeavesNothingAlive() {
        dev.jsloth.cpu.CpuBackend cpu = (dev.jsloth.cpu.CpuBackend) BE;
        int batch = 2, seq = 5, hidden = 16, qh = 4, kvh = 2, hd = 4, inter = 24;
        int[] ranks = {2, 3, 2, 2, 3, 2, 2};
        for (double dropout : new double[]{0.0, 0.25}) {
            BatchContext ctx = context(batch, seq, hd, new int[]{0, 0, 0, 1, 1, 0, 0, 0, 0, 0}).withDropoutSeed(dropout > 0 ? 77 : 0);
            Tensor x = rand(-1, 1, batch * seq, hidden), dy = rand(-1, 1, batch * seq, hidden);
            for (boolean stacked : new boolean[]{false, true}) {
                Layer l0 = layerWithRanks(hidden, qh, kvh, hd, inter, ranks, stacked, 17, dropout);
                Layer l1 = layerWithRanks(hidden, qh, kvh, hd, inter, ranks, stacked, 19, dropout);
                List<DecoderLayer> layers = List.of(l0.layer(), l1.layer());
                for (Parameter p : l0.params()) p.grad(); // gradients are the parameters', allocated once
                for (Parameter p : l1.params()) p.grad();
                for (dev.jsloth.api.blocks.Recompute policy : dev.jsloth.api.blocks.Recompute.values()) {
                    l0.layer().recompute(policy);
                    l1.layer().recompute(policy);
                    for (boolean ckpt : new boolean[]{false, true}) {
                        if (!ckpt && policy != dev.jsloth.api.blocks.Recompute.ALL) continue; // the policy needs checkpointing
                        for (boolean parametersOnly : new boolean[]{false, true}) {
                            String what = "dropout " + dropout + (stacked ? ", stacked" : "") + (ckpt ? ", checkpointed " + policy : "")
                                    + (parametersOnly ? ", parameters only" : "");
                            long live = BE.memoryStats().liveTensors();
                            int failures = 0;
                            for (int n = 0; ; n++) {
                                cpu.failAllocationAfter(n);
                                boolean failed = false;
                                try (Tape tape = new Tape(ctx, ckpt)) {
                                    Tensor h = x;
                                    for (DecoderLayer l : layers) h = tape.forward(l, h);
                                    if (parametersOnly) tape.backwardParameters(dy, null);
                                    else tape.backward(dy, null).close();
                                } catch (dev.jsloth.api.DeviceOutOfMemoryException e) {
                                    failed = true;
                                } finally {
                                    cpu.failAllocationAfter(-1);
                                }
                                assertEquals(live, BE.memoryStats().liveTensors(), what + ": allocation " + n + " failed");
                                if (!failed) break;
                                failures++;
                            }
                            assertTrue(failures > 40, what + ": only " + failures + " allocations in a step");
                        }
                    }
                }
            }
        }
        closeAll();
    }

    /** A block or an afterBlock callback that fails mid-backward leaves no gradient tensor alive once the tape closes. */
    @Test
    void tapeFreesTheGradientInHandWhenBackwardFails() {
        BatchContext ctx = context(1, 4, 4, null);
        Tensor x = rand(-1, 1, 4, 8), dy = rand(-1, 1, 4, 8);
        long live = BE.memoryStats().liveTensors();
        for (int failing = 0; failing < 3; failing++) {
            for (boolean parametersOnly : new boolean[]{false, true}) {
                for (boolean inCallback : new boolean[]{false, true}) {
                    int f = failing;
                    try (Tape tape = new Tape(ctx, false)) {
                        Tensor h = x;
                        for (int b = 0; b < 3; b++) h = tape.forward(new Doubling(!inCallback && b == f), h);
                        java.util.function.IntConsumer after = inCallback ? p -> {
                            if (p == f) throw new IllegalStateException("callback failed");
                        } : null;
                        org.junit.jupiter.api.Assertions.assertThrows(IllegalStateException.class, () -> {
                            if (parametersOnly) tape.backwardParameters(dy, after);
                            else tape.backward(dy, after).close();
                        });
                    }
                    assertEquals(live, BE.memoryStats().liveTensors(),
                            "block " + failing + (inCallback ? "'s callback" : "") + " failed" + (parametersOnly ? " (parameters only)" : ""));
                }
            }
        }
        closeAll();
    }

    /**
     * A user block that saves nothing (null) runs on every kind of tape (recording, checkpointed, forward-only), its
     * backward gives the right dX, and nothing is left alive (it threw, and leaked its output, with checkpointing).
     */
    @Test
    void aBlockThatSavesNothingRunsOnEveryTape() {
        BatchContext ctx = context(1, 4, 4, null);
        Tensor x = rand(-1, 1, 4, 8), dy = rand(-1, 1, 4, 8);
        long live = BE.memoryStats().liveTensors();
        dev.jsloth.api.autograd.Block<AutoCloseable> noState = new dev.jsloth.api.autograd.Block<>() {
            @Override
            public Forward<AutoCloseable> forward(Tensor in, BatchContext c) {
                Tensor y = BE.allocate(in.dtype(), in.shape());
                K.axpy(2.0, in, y);
                return new Forward<>(y, null);
            }

            @Override
            public Tensor backward(Tensor d, AutoCloseable saved, BatchContext c) {
                Tensor dx = BE.allocate(d.dtype(), d.shape());
                K.axpy(2.0, d, dx);
                return dx;
            }
        };
        double[] want = BE.download(dy);
        for (int i = 0; i < want.length; i++) want[i] *= 8; // three doublings
        for (boolean checkpointing : new boolean[]{false, true}) {
            try (Tape tape = new Tape(ctx, checkpointing)) {
                Tensor h = x;
                for (int b = 0; b < 3; b++) h = tape.forward(noState, h);
                try (Tensor dx = tape.backward(dy)) {
                    assertArrayEquals(want, BE.download(dx), 0.0, "checkpointing " + checkpointing);
                }
            }
            assertEquals(live, BE.memoryStats().liveTensors(), "checkpointing " + checkpointing);
        }
        try (Tape tape = Tape.forwardOnly(ctx)) {
            Tensor h = x;
            for (int b = 0; b < 3; b++) h = tape.forward(noState, h);
            assertEquals(8 * BE.download(x)[0], BE.download(h)[0], 0.0);
        }
        assertEquals(live, BE.memoryStats().liveTensors(), "forward-only");
        closeAll();
    }

    /** y = 2x; its backward dx = 2 dy, or a failure. */
    private record Doubling(boolean fails) implements dev.jsloth.api.autograd.Block<AutoCloseable> {
        @Override
        public Forward<AutoCloseable> forward(Tensor x, BatchContext ctx) {
            Tensor y = BE.allocate(x.dtype(), x.shape());
            K.axpy(2.0, x, y);
            return new Forward<>(y, () -> { });
        }

        @Override
        public Tensor backward(Tensor dy, AutoCloseable saved, BatchContext ctx) {
            if (fails) throw new IllegalStateException("block failed");
            Tensor dx = BE.allocate(dy.dtype(), dy.shape());
            K.axpy(2.0, dy, dx);
            return dx;
        }
    }

    private static List<double[]> parameterGradients(List<DecoderLayer> layers, List<Parameter> params, Tensor x, Tensor dy,
                                                     BatchContext ctx, boolean checkpointing, boolean inputGradient,
                                                     java.util.function.IntConsumer afterBlock) {
        for (Parameter p : params) p.zeroGrad();
        try (Tape tape = new Tape(ctx, checkpointing)) {
            Tensor h = x;
            for (DecoderLayer l : layers) h = tape.forward(l, h);
            if (inputGradient) tape.backward(dy, afterBlock).close();
            else tape.backwardParameters(dy, afterBlock);
        }
        List<double[]> out = new ArrayList<>();
        for (Parameter p : params) out.add(BE.download(p.grad()));
        return out;
    }

    private static List<double[]> grads(GradCheck.Function f, Tensor dy) {
        List<double[]> out = new ArrayList<>();
        for (Tensor g : f.backward(dy)) {
            out.add(BE.download(g));
            g.close();
        }
        return out;
    }
}
