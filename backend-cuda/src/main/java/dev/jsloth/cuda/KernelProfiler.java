package dev.jsloth.cuda;

import java.lang.foreign.MemorySegment;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * GPU time per kernel, for finding where a training step goes (the machines have no Nsight Systems): with
 * {@code -Djsloth.cuda.profile=true} (or {@code JSLOTH_CUDA_PROFILE=1}) every kernel launch and cuBLASLt product
 * is bracketed by CUDA events on the stream, and the elapsed times are summed by name (kernel instantiation, or
 * GEMM types and shape). The backend prints the table (the 40 largest lines, or {@code -Djsloth.cuda.profileLines=N})
 * to standard error when it closes. Off by default: the events cost a little host time per launch.
 */
final class KernelProfiler {
    static final boolean ENABLED = Boolean.getBoolean("jsloth.cuda.profile") || "1".equals(System.getenv("JSLOTH_CUDA_PROFILE"));

    private record Span(String name, MemorySegment start, MemorySegment end) {
    }

    private static final class Total {
        double millis;
        long count;
    }

    private final CudaDevice device;
    private final ArrayDeque<MemorySegment> free = new ArrayDeque<>();
    private final List<Span> pending = new ArrayList<>();
    private final Map<String, Total> totals = new HashMap<>();

    KernelProfiler(CudaDevice device) {
        this.device = device;
    }

    private MemorySegment event() {
        MemorySegment e = free.poll();
        if (e == null) e = device.driver.createEvent();
        device.driver.record(e, device.stream());
        return e;
    }

    /** Marks the start of a span on the stream. */
    synchronized MemorySegment begin() {
        return event();
    }

    /** Marks the end of the span begun at {@code start}. */
    synchronized void end(String name, MemorySegment start) {
        pending.add(new Span(name, start, event()));
        if (pending.size() >= 4096) drain();
    }

    private void drain() {
        for (Span s : pending) {
            device.driver.synchronizeEvent(s.end());
            Total t = totals.computeIfAbsent(s.name(), k -> new Total());
            t.millis += device.driver.elapsedMillis(s.start(), s.end());
            t.count++;
            free.add(s.start());
            free.add(s.end());
        }
        pending.clear();
    }

    /** The largest totals, one line each, and the sum of all. */
    synchronized String report(int lines) {
        drain();
        double all = totals.values().stream().mapToDouble(t -> t.millis).sum();
        StringBuilder sb = new StringBuilder(String.format(Locale.ROOT, "[cuda profile] %.1f ms of GPU time in %d kernels/GEMMs%n",
                all, totals.values().stream().mapToLong(t -> t.count).sum()));
        totals.entrySet().stream().sorted((a, b) -> Double.compare(b.getValue().millis, a.getValue().millis)).limit(lines)
                .forEach(e -> sb.append(String.format(Locale.ROOT, "[cuda profile] %9.2f ms %5.1f%% %7d x  %s%n", e.getValue().millis,
                        100 * e.getValue().millis / Math.max(1e-9, all), e.getValue().count, e.getKey())));
        return sb.toString();
    }

    synchronized void close() {
        drain();
        for (MemorySegment e : free) device.driver.destroyEvent(e);
        free.clear();
    }
}
