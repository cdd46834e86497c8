package dev.jsloth.bench;

import dev.jsloth.api.AttentionDims;
import dev.jsloth.api.Backend;
import dev.jsloth.api.DType;
import dev.jsloth.api.Kernels;
import dev.jsloth.api.Shape;
import dev.jsloth.api.Tensor;
import dev.jsloth.api.spi.Backends;
import dev.jsloth.api.autograd.Parameter;
import dev.jsloth.api.ops.LoraLinear;
import dev.jsloth.api.ops.RopeTables;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * Each op's forward followed by its backward, F32, at one layer of the {@code llama-25m} shape (hidden 512, 8 query
 * / 4 key-value heads of 64, MLP 1408, vocabulary 8192) for a batch of {@code batch x seq} tokens — the op mix of
 * a LoRA training step, one op per benchmark method.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Warmup(iterations = 4, time = 1)
@Measurement(iterations = 8, time = 1)
@Fork(1) // the fork inherits the launching JVM's flags (tools/bench/jmh.sh: the Vector API module, native access)
public class OpBenchmark {
    private static final int HIDDEN = 512, HEADS = 8, KV_HEADS = 4, HEAD_DIM = 64, MLP = 1408, VOCAB = 8192, RANK = 16;

    @Param("cpu")
    public String backend;
    @Param("2")
    public int batch;
    @Param("256")
    public int seq;

    private Backend be;
    private Kernels k;
    private final List<AutoCloseable> owned = new ArrayList<>();
    private Tensor x, normW, y, rstd, dy, dx, dNormW;
    private Tensor q, cos, sin;
    private Tensor gate, up, act, dAct, dGate, dUp;
    private AttentionDims dims;
    private Tensor aq, ak, av, aOut, lse, dOut, dq, dk, dv;
    private Tensor logits, labels, rowLoss, rowLse, dLogits;
    private Tensor table, ids, emb, dTable;
    private LoraLinear lora;
    private Tensor loraX, loraDy;

    private Tensor own(Tensor t) {
        owned.add(t);
        return t;
    }

    private Tensor random(Shape s, double scale) {
        return own(RandomTensors.random(be, DType.F32, s, scale, owned.size() + 1));
    }

    private Tensor zeros(int... dims) {
        return own(be.allocate(DType.F32, dims));
    }

    @Setup(Level.Trial)
    public void setUp() {
        be = Backends.create(backend);
        k = be.kernels();
        int n = batch * seq;
        x = random(Shape.of(n, HIDDEN), 1);
        normW = random(Shape.of(HIDDEN), 1);
        y = zeros(n, HIDDEN);
        rstd = zeros(n);
        dy = random(Shape.of(n, HIDDEN), 1);
        dx = zeros(n, HIDDEN);
        dNormW = zeros(HIDDEN);

        q = random(Shape.of(n, HEADS * HEAD_DIM), 1);
        // the model's tables (each position a rotation): random cos/sin scaled q by c^2 + s^2 on every fwd + inverse
        // pair, so the benchmark's q ran into subnormals and timed their microcode assists (~10x slower)
        int[] positions = new int[n];
        for (int i = 0; i < n; i++) positions[i] = i % seq;
        RopeTables.Tables tables = RopeTables.compute(be, DType.F32, RopeTables.Config.standard(10000), HEAD_DIM, positions);
        cos = own(tables.cos());
        sin = own(tables.sin());

        gate = random(Shape.of(n, MLP), 2);
        up = random(Shape.of(n, MLP), 2);
        act = zeros(n, MLP);
        dAct = random(Shape.of(n, MLP), 1);
        dGate = zeros(n, MLP);
        dUp = zeros(n, MLP);

        dims = new AttentionDims(batch, seq, HEADS, KV_HEADS, HEAD_DIM);
        aq = random(Shape.of(n, HEADS * HEAD_DIM), 1);
        ak = random(Shape.of(n, KV_HEADS * HEAD_DIM), 1);
        av = random(Shape.of(n, KV_HEADS * HEAD_DIM), 1);
        aOut = zeros(n, HEADS * HEAD_DIM);
        lse = zeros(batch, HEADS, seq);
        dOut = random(Shape.of(n, HEADS * HEAD_DIM), 1);
        dq = zeros(n, HEADS * HEAD_DIM);
        dk = zeros(n, KV_HEADS * HEAD_DIM);
        dv = zeros(n, KV_HEADS * HEAD_DIM);

        logits = random(Shape.of(n, VOCAB), 4);
        labels = own(RandomTensors.ints(be, Shape.of(n), VOCAB, 7));
        rowLoss = zeros(n);
        rowLse = zeros(n);
        dLogits = zeros(n, VOCAB);

        table = random(Shape.of(VOCAB, HIDDEN), 1);
        ids = own(RandomTensors.ints(be, Shape.of(n), VOCAB, 8));
        emb = zeros(n, HIDDEN);
        dTable = zeros(VOCAB, HIDDEN);

        Parameter loraA = new Parameter("A", random(Shape.of(RANK, HIDDEN), 0.05), zeros(RANK, HIDDEN));
        Parameter loraB = new Parameter("B", random(Shape.of(MLP, RANK), 0.05), zeros(MLP, RANK));
        lora = new LoraLinear(random(Shape.of(MLP, HIDDEN), 0.05), null, loraA, loraB, 1.0);
        loraX = x;
        loraDy = random(Shape.of(n, MLP), 1);
    }

    @TearDown(Level.Trial)
    public void tearDown() throws Exception {
        for (AutoCloseable c : owned.reversed()) c.close();
        be.close();
    }

    @Benchmark
    public void rmsNorm() {
        k.rmsNormForward(x, normW, 1e-5, y, rstd);
        k.rmsNormBackward(dy, x, normW, rstd, dx, dNormW);
        be.synchronize();
    }

    @Benchmark
    public void rope() {
        k.rope(q, cos, sin, HEADS, false);
        k.rope(q, cos, sin, HEADS, true);
        be.synchronize();
    }

    @Benchmark
    public void swiglu() {
        k.swigluForward(gate, up, act);
        k.swigluBackward(dAct, gate, up, dGate, dUp);
        be.synchronize();
    }

    @Benchmark
    public void attention() {
        double scale = 1 / Math.sqrt(HEAD_DIM);
        k.attentionForward(dims, aq, ak, av, null, scale, aOut, lse);
        k.attentionBackward(dims, dOut, aq, ak, av, null, scale, aOut, lse, dq, dk, dv);
        be.synchronize();
    }

    @Benchmark
    public void crossEntropy() {
        k.crossEntropyForward(logits, labels, -100, rowLoss, rowLse);
        k.crossEntropyBackward(logits, labels, rowLse, -100, 1.0 / (batch * seq), dLogits);
        be.synchronize();
    }

    @Benchmark
    public void embedding() {
        k.embeddingForward(table, ids, emb);
        k.embeddingBackward(emb, ids, dTable);
        be.synchronize();
    }

    /** The gate projection's LoRA linear (512 -> 1408, rank 16): base product, rank-16 bracketed products, backward. */
    @Benchmark
    public void loraLinear() {
        LoraLinear.Forward f = lora.forwardSaving(loraX);
        Tensor dIn = lora.backward(loraDy, f.saved());
        be.synchronize();
        dIn.close();
        f.y().close();
        f.saved().close();
    }
}
