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

    /** Runs {@code body} over {@code [0, n)} split into chunks of at least {@code minChunk} items. */
    static void forRange(int n, int minChunk, Range body) {
        if (n <= 0) return;
        int chunks = Math.min(THREADS * 4, Math.max(1, n / Math.max(1, minChunk)));
        if (chunks <= 1 || THREADS == 1) {
            body.run(0, n);
            return;
        }
        chunks = Math.min(chunks, n);
        List<RecursiveAction> tasks = new ArrayList<>(chunks);
        for (int c = 0; c < chunks; c++) {
            int lo = (int) ((long) n * c / chunks), hi = (int) ((long) n * (c + 1) / chunks);
            tasks.add(new RecursiveAction() {
                @Override
                protected void compute() {
                    body.run(lo, hi);
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
