package dev.jsloth.opencl;

import org.jocl.CL;
import org.jocl.Pointer;
import org.jocl.Sizeof;
import org.jocl.cl_event;
import org.jocl.cl_kernel;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * Device time per kernel, for finding where a training step goes on an OpenCL device: with
 * {@code -Djsloth.opencl.profile=true} (or {@code JSLOTH_OPENCL_PROFILE=1}) the queue is created with profiling on,
 * every launch returns an event, and the events' start/end times are summed by kernel name (GEMMs also by
 * their tile variant and shape). The backend prints the table to standard error when it closes. Off by default.
 */
final class KernelProfiler {
    static final boolean ENABLED = Boolean.getBoolean("jsloth.opencl.profile") || "1".equals(System.getenv("JSLOTH_OPENCL_PROFILE"));

    private record Span(String name, cl_event event) {
    }

    private static final class Total {
        double millis;
        long count;
    }

    private final Map<cl_kernel, String> names = new IdentityHashMap<>();
    private final List<Span> pending = new ArrayList<>();
    private final Map<String, Total> totals = new HashMap<>();

    /** The kernel's function name (cached: the same {@code cl_kernel} is launched many times). */
    synchronized String name(cl_kernel kernel) {
        return names.computeIfAbsent(kernel, KernelProfiler::functionName);
    }

    /** A kernel's function name, as OpenCL reports it. */
    static String functionName(cl_kernel k) {
        long[] size = new long[1];
        CL.clGetKernelInfo(k, CL.CL_KERNEL_FUNCTION_NAME, 0, null, size);
        byte[] bytes = new byte[(int) size[0]];
        CL.clGetKernelInfo(k, CL.CL_KERNEL_FUNCTION_NAME, bytes.length, Pointer.to(bytes), null);
        return new String(bytes, 0, Math.max(0, bytes.length - 1), java.nio.charset.StandardCharsets.US_ASCII);
    }

    synchronized void add(String name, cl_event event) {
        pending.add(new Span(name, event));
    }

    /** Collects the finished spans once 4096 are pending (called outside the launch lock: it waits for events). */
    synchronized void drainIfFull() {
        if (pending.size() >= 4096) drain();
    }

    private void drain() {
        long[] t = new long[1];
        for (Span s : pending) {
            CL.clWaitForEvents(1, new cl_event[]{s.event()});
            CL.clGetEventProfilingInfo(s.event(), CL.CL_PROFILING_COMMAND_START, Sizeof.cl_ulong, Pointer.to(t), null);
            long start = t[0];
            CL.clGetEventProfilingInfo(s.event(), CL.CL_PROFILING_COMMAND_END, Sizeof.cl_ulong, Pointer.to(t), null);
            Total total = totals.computeIfAbsent(s.name(), k -> new Total());
            total.millis += (t[0] - start) * 1e-6;
            total.count++;
            CL.clReleaseEvent(s.event());
        }
        pending.clear();
    }

    /** The largest totals, one line each, and the sum of all. */
    synchronized String report(int lines) {
        drain();
        double all = totals.values().stream().mapToDouble(t -> t.millis).sum();
        StringBuilder sb = new StringBuilder(String.format(Locale.ROOT, "[opencl profile] %.1f ms of device time in %d kernels%n",
                all, totals.values().stream().mapToLong(t -> t.count).sum()));
        totals.entrySet().stream().sorted((a, b) -> Double.compare(b.getValue().millis, a.getValue().millis)).limit(lines)
                .forEach(e -> sb.append(String.format(Locale.ROOT, "[opencl profile] %9.2f ms %5.1f%% %7d x  %s%n", e.getValue().millis,
                        100 * e.getValue().millis / Math.max(1e-9, all), e.getValue().count, e.getKey())));
        return sb.toString();
    }
}
