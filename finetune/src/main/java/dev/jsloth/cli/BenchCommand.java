package dev.jsloth.cli;

import dev.jsloth.api.Backend;
import dev.jsloth.api.DType;
import dev.jsloth.api.Tensor;
import dev.jsloth.api.blocks.Recompute;
import dev.jsloth.api.distributed.Communicator;
import dev.jsloth.api.distributed.ProcessGroup;
import dev.jsloth.model.LlamaConfig;
import dev.jsloth.model.Shapes;
import dev.jsloth.train.GradientBuckets;
import dev.jsloth.train.RandomLoraTraining;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.lang.management.CompilationMXBean;
import java.lang.management.ManagementFactory;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.Callable;

/**
 * {@code jsloth bench}: GEMM throughput ({@code --gemm MxNxK}) or LoRA training steps of a named shape
 * ({@code --shape NAME}); prints one JSON line.
 */
@Command(name = "bench", mixinStandardHelpOptions = true,
        description = "Benchmark GEMM (--gemm MxNxK) or LoRA training steps of a model shape (--shape NAME). Prints one JSON line.")
final class BenchCommand implements Callable<Integer> {
    @Option(names = "--gemm", paramLabel = "MxNxK", description = "C[M,N] = A[M,K] B[K,N] in F32.")
    String gemm;

    @Option(names = "--trans-b", description = "With --gemm: B stored [N,K] and transposed (the X W^T of a linear layer).")
    boolean transB;

    @Option(names = "--shape", paramLabel = "NAME", description = "tiny, llama-25m, tinyllama-1.1b, llama3.2-1b, llama3.1-8b.")
    String shape;

    @Option(names = "--batch", defaultValue = "1")
    int batch;

    @Option(names = "--seq", defaultValue = "256")
    int seq;

    @Option(names = "--steps", defaultValue = "5", description = "Measured steps, after warm-up steps (at least 2, then until the JIT compiler is quiet).")
    int steps;

    @Option(names = "--no-gc", description = "Disable gradient checkpointing.")
    boolean noGc;

    @Option(names = "--recompute", defaultValue = "mlp", paramLabel = "POLICY",
            description = "What gradient checkpointing recomputes: all, all-but-attention or mlp (default).")
    String recompute;

    @Option(names = "--qlora", description = "NF4 (double-quantized) projection weights.")
    boolean qlora;

    @Option(names = "--dtype", paramLabel = "TYPE",
            description = "Activation type for --shape: bf16 (mixed precision, F32 LoRA weights) or f32. Default: the backend's "
                    + "preferred type (bf16 on GPUs with tensor cores: cuda, opencl on NVIDIA; f32 elsewhere). With --gemm: the type of A and B (C is F32); default f32.")
    BackendOptions.Precision dtype;

    @Option(names = "--lora-r", defaultValue = "16")
    int rank;

    @Option(names = "--lora-dropout", defaultValue = "0", paramLabel = "P",
            description = "With --shape: LoRA dropout on every adapter (the per-projection path; default 0).")
    double loraDropout;

    @Option(names = "--gpus", paramLabel = "N", description = "With --shape: data-parallel steps on N GPUs of this host (one process "
            + "each, --batch sequences per GPU, gradients all-reduced with NCCL); tok_s counts all GPUs.")
    Integer gpus;

    @picocli.CommandLine.Spec
    picocli.CommandLine.Model.CommandSpec spec;

    @Option(names = "--threads", paramLabel = "T", description = "CPU threads (default: all cores).")
    Integer threads;

    @Option(names = "--backend", paramLabel = "NAME")
    String backend;

    @Option(names = "--repeats", defaultValue = "7", description = "Timed GEMM repetitions (median reported).")
    int repeats;

    @Option(names = "--vs-gemm", paramLabel = "MxNxK", description = "With --shape: after each measured step, run this GEMM "
            + "(F32, or --dtype) for about as long, in the same process, and report the step's GFLOP/s over the GEMM's "
            + "(median of the per-step ratios: both see the machine in the same state).")
    String vsGemm;

    @Override
    public Integer call() throws Exception {
        if (threads != null) System.setProperty("jsloth.threads", Integer.toString(threads));
        if ((gemm == null) == (shape == null)) throw new IllegalArgumentException("give exactly one of --gemm MxNxK or --shape NAME");
        if (dtype == BackendOptions.Precision.f64) throw new IllegalArgumentException("--dtype takes bf16 or f32, got f64");
        if (steps < 1) throw new IllegalArgumentException("--steps must be at least 1, got " + steps);
        if (ProcessLauncher.shouldLaunch(gpus)) {
            if (shape == null) throw new IllegalArgumentException("--gpus goes with --shape");
            return ProcessLauncher.launch(gpus, "bench", FinetuneCommand.argumentsAfter(spec), backend);
        }
        try (Backend be = dev.jsloth.api.spi.Backends.create(backend != null ? backend : dev.jsloth.api.spi.Backends.requestedName())) {
            Map<String, Object> result = gemm != null ? gemm(be) : shape(be);
            if (result != null) JsonLine.print(result);
        }
        return 0;
    }

    private Map<String, Object> gemm(Backend be) {
        try (GemmRun g = new GemmRun(be, gemm, transB, dtype != null ? dtype.dtype : DType.F32)) {
            // each sample repeats the product enough times to last ~50 ms (short products are dominated by timer noise)
            int perSample = g.callsFor(0.05);
            double[] secs = new double[Math.max(1, repeats)];
            for (int i = 0; i < secs.length; i++) secs[i] = g.secondsPerCall(perSample);
            Arrays.sort(secs);
            double median = secs[secs.length / 2];
            Map<String, Object> out = new LinkedHashMap<>();
            out.put("gemm", g.m + "x" + g.n + "x" + g.k);
            out.put("trans_b", transB);
            out.put("operands", g.operands.name().toLowerCase(java.util.Locale.ROOT));
            out.put("backend", be.name());
            out.put("threads", threads);
            out.put("median_s", median);
            out.put("gflops", g.flops() / median / 1e9);
            out.put("best_gflops", g.flops() / secs[0] / 1e9);
            return out;
        }
    }

    /**
     * The JIT's total compilation time where this JVM reports it (else none is watched, and every stretch counts as
     * quiet): a stretch of work is quiet when the JIT finished compiling for under 2% of its wall time. Both warm-ups
     * (a GEMM's, a training step's) run until it is.
     */
    private record JitClock(CompilationMXBean bean) {
        static JitClock ofThisJvm(boolean watch) {
            CompilationMXBean b = ManagementFactory.getCompilationMXBean();
            return new JitClock(watch && b != null && b.isCompilationTimeMonitoringSupported() ? b : null);
        }

        long millis() {
            return bean == null ? 0 : bean.getTotalCompilationTime();
        }

        boolean quietSince(long millisBefore, long nanos) {
            return bean == null || bean.getTotalCompilationTime() - millisBefore < 0.02 * nanos / 1e6;
        }
    }

    /** One GEMM's operands on a backend, warmed up: {@code C[M,N] = A[M,K] op(B)}, random A and B. */
    private static final class GemmRun implements AutoCloseable {
        final int m, n, k;
        final DType operands;
        private final Backend be;
        private final boolean transB;
        private final Tensor a, b, c;
        private final double warmSecondsPerCall;

        /** Device bytes of the three operands (live through the training steps beside which the GEMM runs). */
        long bytes() {
            long sum = 0;
            for (Tensor t : new Tensor[]{a, b, c}) sum += t.numel() * t.dtype().bits() / 8;
            return sum;
        }

        GemmRun(Backend be, String spec, boolean transB, DType operands) {
            String[] p = spec.toLowerCase(java.util.Locale.ROOT).split("x");
            if (p.length != 3) throw new IllegalArgumentException("a GEMM is given as MxNxK, e.g. 2048x2048x2048; got " + spec);
            int[] dims = new int[3];
            for (int i = 0; i < 3; i++) {
                try {
                    dims[i] = Integer.parseInt(p[i]);
                } catch (NumberFormatException e) {
                    throw new IllegalArgumentException("GEMM " + spec + ": " + "MNK".charAt(i) + " = '" + p[i] + "' is not a whole number");
                }
                if (dims[i] <= 0) throw new IllegalArgumentException("GEMM " + spec + ": " + "MNK".charAt(i) + " must be positive");
            }
            this.m = dims[0];
            this.n = dims[1];
            this.k = dims[2];
            if ((long) m * k > Integer.MAX_VALUE - 8 || (long) k * n > Integer.MAX_VALUE - 8 || (long) m * n > Integer.MAX_VALUE - 8)
                throw new IllegalArgumentException("GEMM " + spec + ": an operand of more than 2^31 elements is beyond this benchmark");
            this.be = be;
            this.transB = transB;
            this.operands = operands;
            SplittableRandom r = new SplittableRandom(1);
            double[] av = new double[m * k], bv = new double[k * n];
            for (int i = 0; i < av.length; i++) av[i] = r.nextDouble(-1, 1);
            for (int i = 0; i < bv.length; i++) bv[i] = r.nextDouble(-1, 1);
            Tensor ta = null, tb = null;
            try { // a failed allocation frees what came before it
                ta = be.upload(operands, dev.jsloth.api.Shape.of(m, k), av);
                tb = be.upload(operands, transB ? dev.jsloth.api.Shape.of(n, k) : dev.jsloth.api.Shape.of(k, n), bv);
                c = be.allocate(DType.F32, m, n);
            } catch (RuntimeException e) {
                if (tb != null) tb.close();
                if (ta != null) ta.close();
                throw e;
            }
            a = ta;
            b = tb;
            // warm-up: windows of at least 10 calls and 0.5 s, for at least 3 s, until the JIT is quiet (it finished
            // compiling for under 2% of the last window's time; at most 30 s), so it has compiled the kernels before
            // anything is timed: with 2 cores its compiler threads share them with the GEMM (1 s left short products at
            // half speed; after 3 s, the C2 threads still took 9% of a 2048^3 run's samples, in its warm-up)
            JitClock jit = JitClock.ofThisJvm(true);
            long warm = System.nanoTime();
            double window;
            int windowCalls;
            try {
                while (true) {
                    long compiled = jit.millis(), t0 = System.nanoTime(), t1;
                    windowCalls = 0;
                    do {
                        be.kernels().gemm(false, transB, 1, a, b, 0, c);
                        be.synchronize();
                        windowCalls++;
                        t1 = System.nanoTime();
                    } while (windowCalls < 10 || t1 - t0 < 500_000_000L);
                    window = (t1 - t0) / 1e9;
                    boolean quiet = jit.quietSince(compiled, t1 - t0);
                    if (t1 - warm >= 3_000_000_000L && (quiet || t1 - warm >= 30_000_000_000L)) break;
                }
            } catch (RuntimeException e) {
                close();
                throw e;
            }
            warmSecondsPerCall = window / windowCalls;
        }

        double flops() {
            return 2.0 * m * n * k;
        }

        /** Calls that last about {@code seconds} (at the warm-up's rate; 1 to 1000). */
        int callsFor(double seconds) {
            return (int) Math.max(1, Math.min(1000, Math.round(seconds / warmSecondsPerCall)));
        }

        /** Runs {@code calls} products back to back; seconds per product. */
        double secondsPerCall(int calls) {
            long t0 = System.nanoTime();
            for (int j = 0; j < calls; j++) be.kernels().gemm(false, transB, 1, a, b, 0, c);
            be.synchronize();
            return (System.nanoTime() - t0) / 1e9 / calls;
        }

        @Override
        public void close() {
            a.close();
            b.close();
            c.close();
        }
    }

    private Map<String, Object> shape(Backend be) throws java.io.IOException {
        ProcessGroup group = ProcessLauncher.currentGroup().orElse(ProcessGroup.single());
        if (group.worldSize() == 1) return shape(be, group, null);
        try (Communicator comm = be.communicator(group)) { // a failure aborts the collectives under way (close would wait for them)
            return comm.abortOnFailure(() -> shape(be, group, comm));
        }
    }

    private Map<String, Object> shape(Backend be, ProcessGroup group, Communicator comm) throws java.io.IOException {
        LlamaConfig c = Shapes.get(shape);
        try (RandomLoraTraining run = new RandomLoraTraining(be, c, batch, seq, rank, qlora, dtype != null ? dtype.dtype : null,
                Recompute.parse(recompute), 2 + group.rank(), loraDropout); // each rank its own data
             GemmRun paired = vsGemm == null ? null : new GemmRun(be, vsGemm, false, dtype != null ? dtype.dtype : DType.F32)) {
            be.resetPeak();
            double[] secs = new double[steps], ratios = new double[steps], gemmSecs = new double[steps], waits = new double[steps];
            double flopsPerStep = Shapes.trainingFlopsPerToken(c, seq, rank) * batch * seq;
            // what the step runs, recomputation included (as Hugging Face's reference benchmark counts its TFLOP/s)
            double executedPerStep = flopsPerStep + (noGc ? 0 : Shapes.recomputeFlopsPerToken(c, seq, rank, run.model().recompute()) * batch * seq);
            double loss = 0;
            // Warm-up: at least 2 steps, then until the JIT is quiet (it compiled for under 2% of the last step; at most
            // 30 steps or 60 s). With 2 cores, C2 compiling beside the kernels made CPU steps after a fixed 2-step
            // warm-up vary by 2x. Data-parallel ranks take a fixed 2 (their collectives must pair up).
            JitClock jit = JitClock.ofThisJvm(comm == null);
            long warmStart = System.nanoTime();
            boolean warming = true;
            int warmSteps = 0;
            for (int i = 0; i < steps; ) {
                long compiled = jit.millis();
                long t0 = System.nanoTime();
                // as the trainer does: gradients all-reduced in buckets while the layers below run backward
                GradientBuckets buckets = comm == null ? null : new GradientBuckets(run.adapter(), comm, c.numLayers(), GradientBuckets.DEFAULT_CAP_BYTES);
                loss = run.step(!noGc, buckets, group.worldSize());
                long queued = System.nanoTime();
                be.synchronize();
                long t1 = System.nanoTime();
                if (warming) {
                    warmSteps++;
                    boolean quiet = jit.quietSince(compiled, t1 - t0);
                    warming = warmSteps < 2 || !quiet && warmSteps < 30 && t1 - warmStart < 60_000_000_000L;
                } else {
                    secs[i] = (t1 - t0) / 1e9;
                    waits[i] = (t1 - queued) / 1e9;
                    if (paired != null) { // the GEMM for about as long as this step took, right after it
                        gemmSecs[i] = paired.secondsPerCall(paired.callsFor(secs[i]));
                        ratios[i] = (flopsPerStep / secs[i]) / (paired.flops() / gemmSecs[i]);
                    }
                    i++;
                }
            }
            Arrays.sort(secs);
            double step = secs[secs.length / 2];
            double tokS = (double) batch * seq * group.worldSize() / step;
            if (!group.isRoot()) return null;
            double flops = Shapes.trainingFlopsPerToken(c, seq, rank) * tokS;
            Map<String, Object> out = new LinkedHashMap<>();
            out.put("shape", shape);
            out.put("backend", be.name());
            out.put("gpus", group.worldSize());
            out.put("batch", batch);
            out.put("seq", seq);
            out.put("gradient_checkpointing", !noGc);
            if (!noGc) out.put("recompute", run.model().recompute().cliName());
            out.put("qlora", qlora);
            if (loraDropout > 0) out.put("lora_dropout", loraDropout);
            out.put("dtype", run.model().computeType().name().toLowerCase(java.util.Locale.ROOT));
            out.put("weight_bytes", run.weights().backendBytes());
            out.put("lora_r", rank);
            out.put("params", Shapes.totalParameters(c));
            out.put("trainable_params", run.adapter().parameterCount());
            out.put("warmup_steps", warmSteps);
            out.put("tok_s", tokS);
            out.put("step_s", step);
            Arrays.sort(waits);
            // how long the host waited for the device once the step was queued (after its last read back, the loss after
            // the forward): near 0, the host is what sets the pace
            out.put("device_wait_s", waits[waits.length / 2]);
            // the training's peak: a paired GEMM's operands, allocated before and live throughout, are not the step's
            out.put("peak_bytes", be.memoryStats().peakBytes() - (paired == null ? 0 : paired.bytes()));
            out.put("gflops", flops / 1e9);
            out.put("executed_gflops", executedPerStep * group.worldSize() / step / 1e9);
            java.util.OptionalDouble peak = be.peakFlops(run.model().computeType()); // per device: the flops above are per device too
            out.put("mfu", peak.isPresent() ? flops / group.worldSize() / peak.getAsDouble() : null);
            if (paired != null) {
                Arrays.sort(ratios);
                Arrays.sort(gemmSecs);
                out.put("vs_gemm", vsGemm);
                out.put("gemm_gflops", paired.flops() / gemmSecs[gemmSecs.length / 2] / 1e9);
                out.put("step_vs_gemm", ratios[ratios.length / 2]);
                out.put("executed_vs_gemm", ratios[ratios.length / 2] * executedPerStep / flopsPerStep);
            }
            out.put("loss", loss);
            return out;
        }
    }
}
