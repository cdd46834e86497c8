package dev.jsloth.cuda;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Matrix products through cuBLASLt for the type combinations it supports here: all-F64 (compute 64F), and
 * F32/BF16/F16 operands of one type with an F32 or same-type output (compute 32F, never TF32). Descriptors,
 * layouts and the algorithm are cached per problem (shape, types, batch, pointer alignment), so a training step's
 * repeated shapes pay for the choice once.
 *
 * <p>Autotuning (opt-in, {@code -Djsloth.cuda.autotune=true}): a problem of at least {@link #TUNE_MIN_FLOPS} that
 * recurs ({@link #TUNE_AFTER_USES} uses: a training step's shapes, not a one-off) is timed once with each of the
 * heuristic's first {@link #CANDIDATES} algorithms, on its real operands (into a scratch output when it accumulates
 * into C), and keeps the fastest; with the profiler on, each choice is printed. Off by default: measured on an H200
 * it gains 0.3% on a tinyllama step (the heuristic's choice was within 1-3% for every large product; it won 10-30% only
 * on a few rank-16 products of 10-70 us), and a timing-based choice makes results differ from run to run in the
 * last bits, where the heuristic's choice is repeatable.
 */
final class CublasGemm implements AutoCloseable {
    static final long WORKSPACE_BYTES = 32L << 20;
    private static final int MAX_PLANS = 512;
    static final boolean AUTOTUNE = Boolean.getBoolean("jsloth.cuda.autotune");
    static final int CANDIDATES = 8;
    static final int TUNE_AFTER_USES = 3;
    static final double TUNE_MIN_FLOPS = 1e8;
    private static final int TUNE_REPEATS = 3;

    private record PlanKey(ColumnMajorGemm problem, int batch, long strideA, long strideB, long strideC, int alignA,
                           int alignB, int alignC) {
    }

    /** Everything cuBLASLt needs for one problem, created once. */
    private final class Plan implements AutoCloseable {
        final MemorySegment desc, layoutA, layoutB, layoutC;
        final java.util.List<CublasLt.Candidate> candidates;
        CublasLt.Candidate chosen;
        int uses;
        boolean tuned; // chosen for good: by timing, or because there is nothing to time
        final String description, profileName; // built once: a GEMM is too hot a path to format strings
        final boolean doubles;
        private final Arena arena = Arena.ofShared();

        Plan(PlanKey key) {
            ColumnMajorGemm p = key.problem();
            description = describe(key);
            profileName = "cublasLt " + p.a().type() + "->" + p.c().type() + " m=" + p.m() + " n=" + p.n() + " k=" + p.k()
                    + (key.batch() > 1 ? " batch=" + key.batch() : "");
            doubles = p.c().type() == ElementType.F64;
            desc = lt.createMatmulDesc(doubles ? CublasLt.COMPUTE_64F : CublasLt.COMPUTE_32F,
                    doubles ? ElementType.F64.cudaDataType : ElementType.F32.cudaDataType);
            lt.setMatmulDescInt(desc, CublasLt.DESC_TRANSA, p.transa());
            lt.setMatmulDescInt(desc, CublasLt.DESC_TRANSB, p.transb());
            layoutA = layout(p.a(), key.batch(), key.strideA());
            layoutB = layout(p.b(), key.batch(), key.strideB());
            layoutC = layout(p.c(), key.batch(), key.strideC());
            MemorySegment pref = lt.createPreference(WORKSPACE_BYTES, new int[]{key.alignA(), key.alignB(), key.alignC(), key.alignC()});
            try {
                candidates = lt.algorithms(handle, desc, layoutA, layoutB, layoutC, layoutC, pref, AUTOTUNE ? CANDIDATES : 1, arena,
                        description);
                chosen = candidates.getFirst();
                tuned = candidates.size() < 2 || 2.0 * p.m() * p.n() * p.k() * key.batch() < TUNE_MIN_FLOPS;
            } finally {
                lt.destroyPreference(pref);
            }
        }

        private MemorySegment layout(ColumnMajorGemm.Layout l, int batch, long stride) {
            MemorySegment m = lt.createLayout(l.type().cudaDataType, l.rows(), l.cols(), l.ld());
            if (batch > 1) lt.setBatch(m, batch, stride);
            return m;
        }

        @Override
        public void close() {
            lt.destroyLayout(layoutA);
            lt.destroyLayout(layoutB);
            lt.destroyLayout(layoutC);
            lt.destroyMatmulDesc(desc);
            arena.close();
        }
    }

    private final CublasLt lt;
    private final CudaDevice device;
    private final MemorySegment handle;
    private final DeviceAllocator allocator;
    private final DeviceAllocator.Block workspace;
    private final Map<PlanKey, Plan> plans = new LinkedHashMap<>(64, 0.75f, true) {
        @Override
        protected boolean removeEldestEntry(Map.Entry<PlanKey, Plan> eldest) {
            if (size() <= MAX_PLANS) return false;
            eldest.getValue().close();
            return true;
        }
    };

    CublasGemm(CublasLt lt, CudaDevice device, DeviceAllocator allocator) {
        this.lt = lt;
        this.device = device;
        this.allocator = allocator;
        device.bind();
        this.handle = lt.createHandle();
        try {
            this.workspace = allocator.allocate(WORKSPACE_BYTES, "cuda (" + device + ")", 0, "the cuBLASLt workspace");
        } catch (RuntimeException e) {
            lt.destroyHandle(handle);
            throw e;
        }
    }


    /** Whether cuBLASLt takes operands of type {@code in} with an output of type {@code out} here. */
    static boolean supports(ElementType in, ElementType out) {
        if (out == ElementType.F64) return in == ElementType.F64;
        if (in == ElementType.F64) return false;
        return out == ElementType.F32 || out == in;
    }

    /**
     * {@code C = alpha op(A) op(B) + beta C} for {@code batch} matrices of each operand, {@code stride*} elements
     * apart (ignored for one). A and B must share a type that {@link #supports} C's.
     */
    void multiply(MatrixRef a, MatrixRef b, MatrixRef c, double alpha, double beta, int batch, long strideA, long strideB,
                  long strideC) {
        multiply(a, b, c.ptr(), c, alpha, beta, batch, strideA, strideB, strideC);
    }

    /**
     * {@code D = alpha op(A) op(B) + beta C} with C read from {@code cIn} (laid out as D; may be D itself) and D
     * written at {@code d}'s address: cuBLASLt's out-of-place form, e.g. a product plus a residual input that must stay.
     */
    synchronized void multiply(MatrixRef a, MatrixRef b, long cIn, MatrixRef d, double alpha, double beta, int batch, long strideA,
                               long strideB, long strideC) {
        MatrixRef c = d;
        if (a.type() != b.type() || !supports(a.type(), c.type()))
            throw new IllegalArgumentException("cuBLASLt GEMM does not take " + a.type() + " x " + b.type() + " -> " + c.type());
        device.bind();
        ColumnMajorGemm p = ColumnMajorGemm.of(a, b, c);
        // cuBLAS's first operand is our B, its second our A
        PlanKey key = new PlanKey(p, batch, batch > 1 ? strideB : 0, batch > 1 ? strideA : 0, batch > 1 ? strideC : 0,
                alignment(b.ptr()), alignment(a.ptr()), Math.min(alignment(cIn), alignment(c.ptr())));
        Plan plan = plans.get(key);
        if (plan == null) {
            plan = new Plan(key);
            plans.put(key, plan);
        }
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment alphaSeg = plan.doubles ? arena.allocateFrom(ValueLayout.JAVA_DOUBLE, alpha) : arena.allocateFrom(ValueLayout.JAVA_FLOAT, (float) alpha);
            MemorySegment betaSeg = plan.doubles ? arena.allocateFrom(ValueLayout.JAVA_DOUBLE, beta) : arena.allocateFrom(ValueLayout.JAVA_FLOAT, (float) beta);
            if (!plan.tuned && ++plan.uses >= TUNE_AFTER_USES) {
                try {
                    tune(plan, a, b, cIn, c, alphaSeg, betaSeg, beta != 0, batch, strideC);
                } catch (CudaException e) { // the heuristic's choice stays: timing is an optimisation, not a requirement
                    System.err.println("jsloth: cuBLASLt autotuning of " + plan.description + " failed (" + e.getMessage()
                            + "); using the heuristic's choice");
                }
            }
            KernelProfiler profiler = device.profiler;
            MemorySegment start = profiler == null ? null : profiler.begin();
            lt.matmul(handle, plan.desc, alphaSeg, b.ptr(), plan.layoutA, a.ptr(), plan.layoutB, betaSeg, cIn, plan.layoutC,
                    c.ptr(), plan.layoutC, plan.chosen.algo(), workspace.pointer(), Math.min(plan.chosen.workspaceBytes(), WORKSPACE_BYTES),
                    device.stream(), plan.description);
            if (profiler != null) profiler.end(plan.profileName, start);
        }
    }

    /**
     * Times each candidate algorithm of the plan on these operands ({@link #TUNE_REPEATS} runs after one warm-up)
     * and keeps the fastest. Runs that only overwrite C write the real C (the chosen algorithm overwrites it again
     * right after); runs that accumulate write a scratch copy, so C is read but never changed.
     */
    private void tune(Plan plan, MatrixRef a, MatrixRef b, long cIn, MatrixRef c, MemorySegment alpha, MemorySegment beta,
                      boolean accumulates, int batch, long strideC) {
        plan.tuned = true;
        CudaDriver driver = device.driver;
        long outputBytes = ((batch > 1 ? (batch - 1) * strideC : 0) + (c.rows() - 1) * c.ld() + c.cols()) * c.type().bytes;
        DeviceAllocator.Block scratch = accumulates ? allocator.allocate(outputBytes, "cuda (" + device + ")", 0, "a GEMM autotuning output") : null;
        long d = scratch == null ? c.ptr() : scratch.pointer();
        MemorySegment start = driver.createEvent(), end = driver.createEvent();
        try {
            float best = Float.MAX_VALUE, first = Float.NaN;
            int pick = 0;
            for (int i = 0; i < plan.candidates.size(); i++) {
                CublasLt.Candidate cand = plan.candidates.get(i);
                if (cand.workspaceBytes() > WORKSPACE_BYTES) continue;
                if (run(plan, cand, a, b, cIn, d, alpha, beta) != 0) continue; // warm-up, and whether it runs at all
                driver.record(start, device.stream());
                for (int r = 0; r < TUNE_REPEATS; r++) run(plan, cand, a, b, cIn, d, alpha, beta);
                driver.record(end, device.stream());
                driver.synchronizeEvent(end);
                float ms = driver.elapsedMillis(start, end) / TUNE_REPEATS;
                if (i == 0) first = ms;
                if (ms < best) {
                    best = ms;
                    pick = i;
                }
            }
            plan.chosen = plan.candidates.get(pick);
            if (device.profiler != null)
                System.err.printf(java.util.Locale.ROOT, "[cuda autotune] %s: heuristic's first %.1f us, chosen #%d of %d %.1f us%n",
                        plan.profileName, first * 1e3, pick, plan.candidates.size(), best * 1e3);
        } finally {
            driver.destroyEvent(start);
            driver.destroyEvent(end);
            if (scratch != null) allocator.release(scratch);
        }
    }

    private int run(Plan plan, CublasLt.Candidate cand, MatrixRef a, MatrixRef b, long cIn, long d, MemorySegment alpha,
                    MemorySegment beta) {
        return lt.tryMatmul(handle, plan.desc, alpha, b.ptr(), plan.layoutA, a.ptr(), plan.layoutB, beta, cIn, plan.layoutC,
                d, plan.layoutC, cand.algo(), workspace.pointer(), Math.min(cand.workspaceBytes(), WORKSPACE_BYTES), device.stream());
    }

    /** The largest power of two (at most 256) dividing the address. */
    static int alignment(long ptr) {
        if (ptr == 0) return 256;
        return (int) Math.min(256, Long.lowestOneBit(ptr));
    }

    private static String describe(PlanKey k) {
        ColumnMajorGemm p = k.problem();
        return "column-major m=" + p.m() + " n=" + p.n() + " k=" + p.k() + " op(" + (p.transa() == CublasLt.OP_T ? "T" : "N")
                + "," + (p.transb() == CublasLt.OP_T ? "T" : "N") + ") " + p.a().type() + "x" + p.b().type() + "->" + p.c().type()
                + " lda=" + p.a().ld() + " ldb=" + p.b().ld() + " ldc=" + p.c().ld() + (k.batch() > 1 ? " batch=" + k.batch() : "");
    }

    @Override
    public synchronized void close() {
        device.bind();
        for (Plan p : plans.values()) p.close();
        plans.clear();
        lt.destroyHandle(handle);
        allocator.release(workspace);
    }
}
