package dev.jsloth.cpu;

import java.util.concurrent.ForkJoinPool;
import java.util.concurrent.ForkJoinWorkerThread;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.locks.LockSupport;

/**
 * The CPU backend's one threading strategy: a range of work items is split into contiguous chunks (a function of the
 * range and the thread count only), and the calling thread and up to {@code threads - 1} pool threads take chunks in
 * turn from a shared counter until none is left (system property {@code jsloth.threads}, default: all cores). The
 * caller works from the first moment: a parked pool thread takes tens of microseconds to wake on this VM, which with
 * the caller only waiting (fork/join's {@code invoke}) made a product of a few MFLOP slower on two threads than on one.
 */
final class Parallel {
    static final int THREADS = Math.max(1, Integer.getInteger("jsloth.threads", Runtime.getRuntime().availableProcessors()));
    private static final AtomicInteger NAMES = new AtomicInteger();
    /** The helpers; null with one thread. */
    private static final ForkJoinPool POOL = THREADS == 1 ? null : new ForkJoinPool(THREADS - 1, pool -> {
        ForkJoinWorkerThread t = ForkJoinPool.defaultForkJoinWorkerThreadFactory.newThread(pool);
        t.setDaemon(true);
        t.setName("jsloth-cpu-" + NAMES.incrementAndGet());
        return t;
    }, null, false);

    /** Work on items {@code [lo, hi)}. */
    interface Range {
        void run(int lo, int hi);
    }

    private Parallel() {
    }

    /** Work on items {@code [lo, hi)}, chunk number {@code chunk} of the split. */
    interface ChunkRange {
        void run(int chunk, int lo, int hi);
    }

    /** Contributes a vector of partial sums over items {@code [lo, hi)} into {@code acc} (zeroed, owned by the chunk). */
    interface PartialSum {
        void run(int lo, int hi, double[] acc);
    }

    /** Runs {@code body} over {@code [0, n)} split into chunks of at least {@code minChunk} items. */
    static void forRange(int n, int minChunk, Range body) {
        forChunks(n, minChunk, (c, lo, hi) -> body.run(lo, hi));
    }

    /**
     * How many chunks {@link #forChunks} splits {@code n} items into: a function of n, minChunk and THREADS only, at
     * most 16 per thread. Chunks are taken from a counter, so many small ones cost little and balance the threads'
     * last chunks (at 2048^3 the GEMM's 22 row blocks as 22 chunks instead of 8: 3-7% faster in one JVM, alternating).
     */
    static int chunkCount(int n, int minChunk) {
        if (n <= 0) return 0;
        int chunks = Math.min(THREADS * 16, Math.max(1, n / Math.max(1, minChunk)));
        return THREADS == 1 ? 1 : Math.min(chunks, n);
    }

    /**
     * Deterministic parallel sum: each chunk accumulates its own partial vector, and the partials are added in
     * chunk order, so the result does not depend on thread timing (resumed runs reproduce uninterrupted ones).
     */
    static double[] sum(int n, int minChunk, int dim, PartialSum body) {
        double[][] partial = new double[Math.max(1, chunkCount(n, minChunk))][];
        forChunks(n, minChunk, (c, lo, hi) -> {
            double[] acc = new double[dim];
            body.run(lo, hi, acc);
            partial[c] = acc;
        });
        double[] total = new double[dim];
        for (double[] p : partial) if (p != null) for (int j = 0; j < dim; j++) total[j] += p[j];
        return total;
    }

    /**
     * Runs {@code body} over {@code [0, n)} in {@link #chunkCount} contiguous chunks, on the calling thread and on
     * pool threads that join in; returns when every chunk has run. The first exception a chunk throws is rethrown
     * here, later ones suppressed in it (chunks not yet started are then skipped). Calls from inside a chunk nest: the
     * inner caller works too.
     */
    static void forChunks(int n, int minChunk, ChunkRange body) {
        int chunks = chunkCount(n, minChunk);
        if (chunks == 0) return;
        if (chunks == 1) {
            body.run(0, 0, n);
            return;
        }
        Job job = new Job(n, chunks, body);
        try {
            for (int i = Math.min(THREADS - 1, chunks - 1); i > 0; i--) POOL.execute(job::work);
        } finally { // even if a helper could not be queued: never return while queued helpers may still take chunks
            job.work();
            job.awaitOthers();
        }
    }

    /** One split range: chunks handed out by a counter, finished ones counted. */
    private static final class Job {
        private final int n, chunks;
        private final ChunkRange body;
        private final AtomicInteger next = new AtomicInteger(), finished = new AtomicInteger();
        private final AtomicReference<Throwable> failure = new AtomicReference<>();

        Job(int n, int chunks, ChunkRange body) {
            this.n = n;
            this.chunks = chunks;
            this.body = body;
        }

        /** Takes chunks until none is left. */
        void work() {
            for (int c; (c = next.getAndIncrement()) < chunks; ) {
                try {
                    if (failure.get() == null) body.run(c, (int) ((long) n * c / chunks), (int) ((long) n * (c + 1) / chunks));
                } catch (Throwable t) {
                    if (!failure.compareAndSet(null, t)) failure.get().addSuppressed(t);
                } finally {
                    finished.incrementAndGet();
                }
            }
        }

        /**
         * Waits for the chunks other threads took (spinning first: most are short; then yielding, then parking 20 us at
         * a time, so that a long chunk does not keep a core busy), then rethrows a failure.
         */
        void awaitOthers() {
            for (int spins = 0; finished.get() < chunks; spins++) {
                if (spins < 10_000) Thread.onSpinWait();
                else if (spins < 11_000) Thread.yield();
                else LockSupport.parkNanos(20_000);
            }
            Throwable t = failure.get();
            if (t instanceof RuntimeException e) throw e;
            if (t instanceof Error e) throw e;
            if (t != null) throw new IllegalStateException(t);
        }
    }
}
