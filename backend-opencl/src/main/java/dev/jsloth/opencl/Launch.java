package dev.jsloth.opencl;

import dev.jsloth.api.DType;
import org.jocl.CL;
import org.jocl.CLException;
import org.jocl.Pointer;
import org.jocl.Sizeof;
import org.jocl.cl_event;
import org.jocl.cl_kernel;
import org.jocl.cl_mem;

import java.util.ArrayList;
import java.util.List;

/**
 * One kernel launch: the arguments in the order the kernel declares them, then the NDRange. Arguments are
 * collected first and set under the backend's launch lock together with the enqueue, because a {@code cl_kernel}
 * holds its arguments and is shared. {@code real} scalars are passed as float or double to match the program's
 * precision.
 */
final class Launch {
    /** Storage type codes, as {@code DT_*} in common.cl. */
    static int code(DType t) {
        return switch (t) {
            case F32 -> 0;
            case F64 -> 1;
            case BF16 -> 2;
            case F16 -> 3;
            case I32 -> 4;
            case NF4 -> 5;
        };
    }

    private record Arg(long size, Pointer value) {
    }

    private final OpenClBackend backend;
    private final cl_kernel kernel;
    private final Precision precision;
    private final List<Arg> args = new ArrayList<>();
    private String profileName;

    Launch(OpenClBackend backend, cl_kernel kernel, Precision precision) {
        this.backend = backend;
        this.kernel = kernel;
        this.precision = precision;
    }

    /** TENSOR(name): buffer, element offset, storage type. */
    Launch tensor(OpenClTensor t) {
        return mem(t.buffer()).i64(t.offset()).i32(code(t.dtype()));
    }

    /** QTENSOR(name): TENSOR plus the NF4 block scales (a placeholder buffer for other types). */
    Launch quantTensor(OpenClTensor t) {
        tensor(t);
        cl_mem scales = t.scales();
        return mem(scales != null ? scales : backend.placeholder());
    }

    /** INTS(name): an I32 tensor's buffer and element offset; null gives a placeholder (the kernel must not read it). */
    Launch ints(OpenClTensor t) {
        if (t == null) return mem(backend.placeholder()).i64(0);
        return mem(t.buffer()).i64(t.offset());
    }

    /** A plain global buffer argument (scratch of {@code real}s; must start at offset 0). */
    Launch scratch(OpenClTensor t) {
        if (t.offset() != 0) throw new IllegalArgumentException("scratch tensors must not be views");
        return mem(t.buffer());
    }

    Launch mem(cl_mem m) {
        args.add(new Arg(Sizeof.cl_mem, Pointer.to(m)));
        return this;
    }

    Launch i32(int v) {
        args.add(new Arg(Sizeof.cl_int, Pointer.to(new int[]{v})));
        return this;
    }

    Launch flag(boolean v) {
        return i32(v ? 1 : 0);
    }

    Launch i64(long v) {
        args.add(new Arg(Sizeof.cl_long, Pointer.to(new long[]{v})));
        return this;
    }

    /** A {@code real} scalar. */
    Launch real(double v) {
        if (precision == Precision.DOUBLE) args.add(new Arg(Sizeof.cl_double, Pointer.to(new double[]{v})));
        else args.add(new Arg(Sizeof.cl_float, Pointer.to(new float[]{(float) v})));
        return this;
    }

    /** A dynamically sized {@code local} array of {@code bytes} bytes. */
    Launch local(long bytes) {
        args.add(new Arg(Math.max(1, bytes), null));
        return this;
    }

    /** The name this launch is summed under when the profiler is on (default: the kernel's function name). */
    Launch profileAs(String name) {
        this.profileName = name;
        return this;
    }

    /** One-dimensional launch over {@code items} work-items (rounded up to whole groups of {@code group}). */
    void run(long items, int group) {
        if (items <= 0) return;
        run(new long[]{roundUp(items, group)}, new long[]{group});
    }

    void run(long[] global, long[] local) {
        for (long g : global) if (g <= 0) return;
        KernelProfiler profiler = backend.profiler();
        synchronized (backend.launchLock()) {
            try {
                for (int i = 0; i < args.size(); i++) CL.clSetKernelArg(kernel, i, args.get(i).size(), args.get(i).value());
                cl_event event = profiler == null ? null : new cl_event();
                CL.clEnqueueNDRangeKernel(backend.queue(), kernel, global.length, null, global, local, 0, null, event);
                if (profiler != null) profiler.add(profileName == null ? profiler.name(kernel) : profileName, event);
            } catch (CLException e) { // name the kernel and its sizes: JOCL's message is the status alone
                String where = "kernel " + kernelName() + ", global " + java.util.Arrays.toString(global) + ", local "
                        + java.util.Arrays.toString(local);
                if (OpenClBackend.isOutOfMemory(e)) throw backend.outOfMemory(0, "launching " + where + ": " + CL.stringFor_errorCode(e.getStatus()));
                throw new IllegalStateException("OpenCL " + CL.stringFor_errorCode(e.getStatus()) + " launching " + where, e);
            }
        }
        if (profiler != null) profiler.drainIfFull();
    }

    private String kernelName() {
        try {
            return KernelProfiler.functionName(kernel);
        } catch (RuntimeException e) {
            return profileName != null ? profileName : "(unnamed)";
        }
    }

    static long roundUp(long n, long m) {
        return (n + m - 1) / m * m;
    }
}
