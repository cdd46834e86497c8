package dev.jsloth.bench;

import dev.jsloth.api.Backend;
import dev.jsloth.api.DType;
import dev.jsloth.api.Shape;
import dev.jsloth.api.Tensor;
import dev.jsloth.api.spi.Backends;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Optional;
import java.util.SplittableRandom;

/**
 * jsloth's F32 GEMM and OpenBLAS's {@code cblas_sgemm} alternating in one JVM on the same operands and thread count
 * ({@code tools/bench/gemm-vs-openblas-inprocess.sh}). On a shared VM whose speed moves by 2x within minutes, two
 * processes run one after the other can see different machines; here each round times jsloth, OpenBLAS, OpenBLAS,
 * jsloth (then the reverse), each a batch of the same number of products (about 50 ms for the faster side) after a warm-up
 * of at least 3 s and 500 products per side (at most 20 s where 500 take longer), so each round's ratio compares the two under the same conditions.
 *
 * <p>usage: {@code GemmVsOpenBlas LIBRARY ROUNDS MxNxK[:XY]...} (XY: A's and B's transposition, N or T, as the
 * LoRA step's products have them, e.g. {@code 512x16x512:TN} for {@code dB = dY^T XA}); threads: {@code -Djsloth.threads} for both. The library is
 * numpy's bundled OpenBLAS (scipy-openblas, ILP64 symbols {@code scipy_cblas_sgemm64_}) or a plain LP64
 * {@code libopenblas} ({@code cblas_sgemm}). Its worker threads spin for a while after each call unless
 * {@code OPENBLAS_THREAD_TIMEOUT} is small (the script sets 4), and each timed batch starts after a short pause, so
 * neither side runs while the other's threads are still busy. The check at the end compares the two products' C.
 */
public final class GemmVsOpenBlas {
    private static final int ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112;
    private static final long PAUSE_MS = 20;

    private GemmVsOpenBlas() {
    }

    /** cblas_sgemm with 64- or 32-bit integers. */
    private record Sgemm(MethodHandle handle, boolean ilp64) {
        /** C = op(A) op(B), A stored m x k (k x m where transA), B stored k x n (n x k where transB), all row-major. */
        void multiply(int m, int n, int k, boolean transA, boolean transB, MemorySegment a, MemorySegment b, MemorySegment c) throws Throwable {
            int ta = transA ? TRANS : NO_TRANS, tb = transB ? TRANS : NO_TRANS, lda = transA ? m : k, ldb = transB ? k : n;
            if (ilp64)
                handle.invokeExact(ROW_MAJOR, ta, tb, (long) m, (long) n, (long) k, 1f, a, (long) lda, b, (long) ldb, 0f, c, (long) n);
            else
                handle.invokeExact(ROW_MAJOR, ta, tb, m, n, k, 1f, a, lda, b, ldb, 0f, c, n);
        }
    }

    public static void main(String[] args) throws Throwable {
        if (args.length < 3) {
            System.err.println("usage: GemmVsOpenBlas LIBRARY ROUNDS MxNxK[:XY]...   (XY: A's and B's transposition, N or T)");
            System.exit(2);
        }
        Path library = Path.of(args[0]);
        int rounds = Integer.parseInt(args[1]);
        if (rounds < 1) throw new IllegalArgumentException("ROUNDS must be at least 1, got " + rounds);
        int threads = Math.max(1, Integer.getInteger("jsloth.threads", Runtime.getRuntime().availableProcessors()));
        Linker linker = Linker.nativeLinker();
        SymbolLookup lib = SymbolLookup.libraryLookup(library, Arena.global());
        Sgemm sgemm = sgemm(linker, lib, library);
        setThreads(linker, lib, threads);
        try (Backend be = Backends.create("cpu")) {
            System.out.printf("%-16s %8s %12s %12s %8s %16s %10s%n", "MxNxK", "threads", "jsloth GF/s", "OpenBLAS GF/s", "ratio",
                    "ratio q1..q3", "max |diff|");
            for (int i = 2; i < args.length; i++) compare(be, sgemm, args[i], rounds, threads);
        }
    }

    private static Sgemm sgemm(Linker linker, SymbolLookup lib, Path library) {
        var l = ValueLayout.JAVA_LONG;
        var i = ValueLayout.JAVA_INT;
        var f = ValueLayout.JAVA_FLOAT;
        var p = ValueLayout.ADDRESS;
        // 64-bit integers where the library says so by its symbols' suffix (scipy-openblas64, numpy 1.x's openblas64_);
        // a build with INTERFACE64 and unsuffixed names would be misread as LP64, so those are refused by config below
        Optional<MemorySegment> ilp64 = lib.find("scipy_cblas_sgemm64_").or(() -> lib.find("cblas_sgemm64_"));
        if (ilp64.isPresent())
            return new Sgemm(linker.downcallHandle(ilp64.get(), FunctionDescriptor.ofVoid(i, i, i, l, l, l, f, p, l, p, l, f, p, l)), true);
        MemorySegment lp64 = lib.find("cblas_sgemm").or(() -> lib.find("scipy_cblas_sgemm"))
                .orElseThrow(() -> new IllegalArgumentException(library + ": no cblas_sgemm, scipy_cblas_sgemm or a *64_ variant"));
        String config = config(linker, lib);
        if (config.contains("USE64BITINT"))
            throw new IllegalArgumentException(library + " is built with 64-bit integers (" + config + ") but exports unsuffixed names: not supported");
        return new Sgemm(linker.downcallHandle(lp64, FunctionDescriptor.ofVoid(i, i, i, i, i, i, f, p, i, p, i, f, p, i)), false);
    }

    /** openblas_get_config()'s string, or "" where the library has none. */
    private static String config(Linker linker, SymbolLookup lib) {
        Optional<MemorySegment> s = lib.find("openblas_get_config").or(() -> lib.find("scipy_openblas_get_config"));
        if (s.isEmpty()) return "";
        try {
            MemorySegment text = (MemorySegment) linker.downcallHandle(s.get(), FunctionDescriptor.of(ValueLayout.ADDRESS)).invokeExact();
            return text.reinterpret(4096).getString(0);
        } catch (Throwable t) {
            return "";
        }
    }

    private static void setThreads(Linker linker, SymbolLookup lib, int threads) throws Throwable {
        for (String name : new String[]{"scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
                "openblas_set_num_threads"}) {
            Optional<MemorySegment> s = lib.find(name);
            if (s.isPresent()) {
                linker.downcallHandle(s.get(), FunctionDescriptor.ofVoid(ValueLayout.JAVA_INT)).invokeExact(threads);
                return;
            }
        }
        throw new IllegalArgumentException("no openblas_set_num_threads in the library: its thread count would not match");
    }

    private static void compare(Backend be, Sgemm sgemm, String size, int rounds, int threads) throws Throwable {
        String[] dims = size.split(":", -1);
        String[] p = dims[0].split("x");
        if (p.length != 3 || dims.length > 2 || dims.length == 2 && !dims[1].matches("[NT][NT]"))
            throw new IllegalArgumentException("size must be MxNxK or MxNxK:XY (X, Y: N or T, A's and B's transposition), got " + size);
        int m = Integer.parseInt(p[0]), n = Integer.parseInt(p[1]), k = Integer.parseInt(p[2]);
        boolean transA = dims.length == 2 && dims[1].charAt(0) == 'T', transB = dims.length == 2 && dims[1].charAt(1) == 'T';
        double[] av = random((long) m * k, 1), bv = random((long) k * n, 2);
        try (Arena arena = Arena.ofConfined();
             Tensor a = be.upload(DType.F32, transA ? Shape.of(k, m) : Shape.of(m, k), av);
             Tensor b = be.upload(DType.F32, transB ? Shape.of(n, k) : Shape.of(k, n), bv);
             Tensor c = be.allocate(DType.F32, m, n)) {
            MemorySegment na = floats(arena, av), nb = floats(arena, bv), nc = arena.allocate(4L * m * n, 64);
            double flops = 2.0 * m * n * k;
            Product jsloth = () -> {
                be.kernels().gemm(transA, transB, 1, a, b, 0, c);
                be.synchronize();
            };
            Product openBlas = () -> {
                try {
                    sgemm.multiply(m, n, k, transA, transB, na, nb, nc);
                } catch (Throwable t) {
                    throw t instanceof Exception e ? e : new IllegalStateException(t);
                }
            };
            // warm-up: both sides until each has run WARM_UP_NANOS and at least WARM_UP_CALLS products (the JIT compiles
            // jsloth's paths meanwhile); then each timed sample is a batch of products lasting about SAMPLE_NANOS
            long jsNanos = warmUp(jsloth), obNanos = warmUp(openBlas);
            int batch = (int) Math.max(1, Math.min(1_000_000, SAMPLE_NANOS / Math.max(1, Math.min(jsNanos, obNanos))));
            double[] js = new double[rounds], ob = new double[rounds], ratio = new double[rounds];
            for (int round = 0; round < rounds; round++) {
                double j = 0, o = 0;
                for (int half = 0; half < 2; half++) {
                    boolean jslothFirst = ((round + half) & 1) == 0;
                    for (int side = 0; side < 2; side++) {
                        boolean isJsloth = (side == 0) == jslothFirst;
                        Thread.sleep(PAUSE_MS);
                        long nanos = time(isJsloth ? jsloth : openBlas, batch);
                        double gflops = flops * batch / nanos;
                        if (isJsloth) j += gflops / 2;
                        else o += gflops / 2;
                    }
                }
                js[round] = j;
                ob[round] = o;
                ratio[round] = j / o;
            }
            double[] cj = be.download(c);
            double maxDiff = 0;
            for (int i = 0; i < cj.length; i++) maxDiff = Math.max(maxDiff, Math.abs(cj[i] - nc.getAtIndex(ValueLayout.JAVA_FLOAT, i)));
            System.out.printf("%-16s %8d %12.1f %12.1f %8.3f %7.3f..%-7.3f %10.2e%n", size, threads, median(js), median(ob), median(ratio),
                    quantile(ratio, 0.25), quantile(ratio, 0.75), maxDiff);
        }
    }

    /** One product. */
    private interface Product {
        void run() throws Exception;
    }

    /** A warm-up lasts WARM_UP_NANOS and WARM_UP_CALLS products, or WARM_UP_MAX_NANOS if the calls take longer (a slow machine's 2048^3). */
    private static final long WARM_UP_NANOS = 3_000_000_000L, WARM_UP_MAX_NANOS = 20_000_000_000L, SAMPLE_NANOS = 50_000_000L;
    private static final int WARM_UP_CALLS = 500;

    /** Runs the product for the warm-up; returns the median nanoseconds of one product over its last 64 calls. */
    private static long warmUp(Product p) throws Exception {
        long start = System.nanoTime();
        long[] last = new long[64];
        int calls = 0;
        for (long ran; (ran = System.nanoTime() - start) < WARM_UP_NANOS || calls < WARM_UP_CALLS && ran < WARM_UP_MAX_NANOS; ) {
            long t0 = System.nanoTime();
            p.run();
            last[calls++ % last.length] = System.nanoTime() - t0;
        }
        long[] s = Arrays.copyOf(last, Math.min(calls, last.length));
        Arrays.sort(s);
        return s[s.length / 2];
    }

    /** Nanoseconds for {@code batch} products in a row. */
    private static long time(Product p, int batch) throws Exception {
        long t0 = System.nanoTime();
        for (int i = 0; i < batch; i++) p.run();
        return System.nanoTime() - t0;
    }

    private static double[] random(long count, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        double[] v = new double[Math.toIntExact(count)];
        for (int i = 0; i < v.length; i++) v[i] = (float) r.nextDouble(-1, 1); // exact in F32, so both sides read the same values
        return v;
    }

    private static MemorySegment floats(Arena arena, double[] v) {
        MemorySegment s = arena.allocate(4L * v.length, 64);
        for (int i = 0; i < v.length; i++) s.setAtIndex(ValueLayout.JAVA_FLOAT, i, (float) v[i]);
        return s;
    }

    private static double median(double[] v) {
        return quantile(v, 0.5);
    }

    private static double quantile(double[] v, double q) {
        double[] s = v.clone();
        Arrays.sort(s);
        return s[(int) Math.min(s.length - 1, Math.round(q * (s.length - 1)))];
    }
}
