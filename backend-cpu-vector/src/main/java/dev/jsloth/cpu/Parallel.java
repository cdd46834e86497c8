package dev.jsloth.cpu;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ForkJoinPool;
import java.util.concurrent.ForkJoinTask;
import java.util.concurrent.ForkJoinWorkerThread;
import java.util.concurrent.RecursiveAction;

/**
 * The CPU backend's one threading strategy: a fork/join pool of daemon threads (system property
 * {@code jsloth.threads}, default: all cores) over which a range of work items is split into contiguous chunks.
 */
final class Parallel {
    static final int THREADS = Math.max(1, Integer.getInteger("jsloth.threads", Runtime.getRuntime().availableProcessors()));
    private static final ForkJoinPool POOL = new ForkJoinPool(THREADS, pool -> {
        ForkJoinWorkerThread t = ForkJoinPool.defaultForkJoinWorkerThreadFactory.newThread(pool);
        t.setDaemon(true);
        t.setName("jsloth-cpu-" + t.getPoolIndex());
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

    /** How many chunks {@link #forChunks} splits {@code n} items into: a function of n, minChunk and THREADS only. */
    static int chunkCount(int n, int minChunk) {
        if (n <= 0) return 0;
        int chunks = Math.min(THREADS * 4, Math.max(1, n / Math.max(1, minChunk)));
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

    /** Runs {@code body} over {@code [0, n)} in {@link #chunkCount} contiguous chunks. */
    static void forChunks(int n, int minChunk, ChunkRange body) {
        int chunks = chunkCount(n, minChunk);
        if (chunks == 0) return;
        if (chunks == 1) {
            body.run(0, 0, n);
            return;
        }
        List<RecursiveAction> tasks = new ArrayList<>(chunks);
        for (int c = 0; c < chunks; c++) {
            int lo = (int) ((long) n * c / chunks), hi = (int) ((long) n * (c + 1) / chunks), chunk = c;
            tasks.add(new RecursiveAction() {
                @Override
                protected void compute() {
                    body.run(chunk, lo, hi);
                }
            });
        }
        if (ForkJoinTask.getPool() == POOL) ForkJoinTask.invokeAll(tasks);
        else POOL.invoke(new RecursiveAction() {
            @Override
            protected void compute() {
                ForkJoinTask.invokeAll(tasks);
            }
        });
    }
}
