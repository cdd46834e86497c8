import org.jocl.*;
import static org.jocl.CL.*;

/** The probes' OpenCL setup: the first GPU device of any platform, a context and a queue on it (null: no GPU). */
record ProbeGpu(cl_device_id device, cl_context context, cl_command_queue queue) {
    static ProbeGpu first() {
        CL.setExceptionsEnabled(true);
        int[] n = new int[1];
        clGetPlatformIDs(0, null, n);
        cl_platform_id[] ps = new cl_platform_id[n[0]];
        clGetPlatformIDs(n[0], ps, null);
        for (cl_platform_id p : ps) {
            int[] m = new int[1];
            try { clGetDeviceIDs(p, CL_DEVICE_TYPE_GPU, 0, null, m); } catch (CLException e) { continue; }
            if (m[0] == 0) continue;
            cl_device_id[] ds = new cl_device_id[m[0]];
            clGetDeviceIDs(p, CL_DEVICE_TYPE_GPU, m[0], ds, null);
            cl_context_properties props = new cl_context_properties();
            props.addProperty(CL_CONTEXT_PLATFORM, p);
            cl_context ctx = clCreateContext(props, 1, new cl_device_id[]{ds[0]}, null, null, null);
            return new ProbeGpu(ds[0], ctx, clCreateCommandQueueWithProperties(ctx, ds[0], null, null));
        }
        System.out.println("no GPU device");
        return null;
    }

    /** A float's bf16 bits (truncated: the probes' values are small integers, exact in bf16). */
    static short bf16(float f) { return (short) (Float.floatToIntBits(f) >>> 16); }

    /** A program's build log on this device. */
    String buildLog(cl_program prog) {
        long[] sz = new long[1];
        clGetProgramBuildInfo(prog, device, CL_PROGRAM_BUILD_LOG, 0, null, sz);
        byte[] log = new byte[(int) sz[0]];
        clGetProgramBuildInfo(prog, device, CL_PROGRAM_BUILD_LOG, sz[0], Pointer.to(log), null);
        return new String(log, java.nio.charset.StandardCharsets.ISO_8859_1).trim();
    }

    /** Runs each named variant in turn, reporting an exception as the variant's result. */
    static void each(String[] variants, java.util.function.Consumer<String> run) {
        for (String v : variants) {
            try { run.accept(v); } catch (Exception e) { System.out.println(v + ": " + e); }
        }
    }
}
