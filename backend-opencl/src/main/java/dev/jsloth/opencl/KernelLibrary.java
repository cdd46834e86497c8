package dev.jsloth.opencl;

import dev.jsloth.api.DType;
import dev.jsloth.api.quant.Nf4;
import org.jocl.CL;
import org.jocl.CLException;
import org.jocl.Pointer;
import org.jocl.Sizeof;
import org.jocl.cl_context;
import org.jocl.cl_device_id;
import org.jocl.cl_kernel;
import org.jocl.cl_program;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * The backend's OpenCL programs, built from the {@code .cl} resources of this package once per context, and their
 * kernels. The main program (elementwise maps, reductions) is built at start-up for float and, where the device
 * has fp64, for double. Two programs are specialised and built on first use of a specialisation: GEMM per
 * combination of operand storage types, attention per head-dimension bucket ({@link #ATTENTION_BUCKETS}). A
 * failed build throws with the compiler's log.
 */
final class KernelLibrary implements AutoCloseable {
    /** Head-dimension buckets the attention program is compiled for; a head dimension uses the smallest that fits. */
    static final int[] ATTENTION_BUCKETS = {16, 32, 64, 128, 256};
    private static final String[] MAIN_SOURCES = {"common.cl", "elementwise.cl", "reduce.cl"};
    private static final String[] GEMM_SOURCES = {"common.cl", "gemm.cl"};
    private static final String[] CPU_GEMM_SOURCES = {"common.cl", "gemm_cpu.cl"};
    static final String[] MMA_GEMM_SOURCES = {"common.cl", "tensor_cores.cl", "gemm_mma.cl"};
    private static final String[] ATTENTION_SOURCES = {"common.cl", "attention.cl"};
    static final String[] FLASH_SOURCES = {"common.cl", "tensor_cores.cl", "flash_attention.cl"};

    private final cl_context context;
    private final OpenClDevice device;
    private final LaunchConfig config;
    private final Map<String, cl_program> programs = new HashMap<>();
    private final Map<String, cl_kernel> kernels = new HashMap<>();

    KernelLibrary(cl_context context, OpenClDevice device, LaunchConfig config) {
        this.context = context;
        this.device = device;
        this.config = config;
        try {
            for (Precision p : Precision.values())
                if (p == Precision.FLOAT || device.fp64()) mainProgram(p);
        } catch (RuntimeException e) {
            close();
            throw e;
        }
    }

    /** A kernel of the main program. */
    synchronized cl_kernel kernel(Precision p, String name) {
        return kernel(mainProgram(p), "main/" + p + "/" + name, name);
    }

    /** The GEMM kernel for operands stored as {@code a}, {@code b} and {@code c}. */
    synchronized cl_kernel gemmKernel(Precision p, DType a, DType b, DType c) {
        String key = "gemm-" + a + "-" + b + "-" + c + "/" + p;
        return kernel(program(key, p, GEMM_SOURCES, " -DGEMM_A_DT=" + Launch.code(a) + " -DGEMM_B_DT=" + Launch.code(b)
                + " -DGEMM_C_DT=" + Launch.code(c)), key + "/gemm", "gemm");
    }

    /**
     * A kernel of gemm_mma.cl ({@code gemm_mma} or {@code gemm_splitk_sum}) for a C stored as {@code c} and this
     * transpose pair (the operands' storage orders are compile-time there).
     */
    synchronized cl_kernel mmaGemmKernel(DType c, boolean transA, boolean transB, String name) {
        String key = "gemm_mma-" + c + (transA ? "-tA" : "") + (transB ? "-tB" : "");
        return kernel(program(key, Precision.FLOAT, MMA_GEMM_SOURCES, mmaGemmOptions(c, transA, transB, LaunchConfig.MMA_WARP_COLS)
                + " " + LaunchConfig.MMA_BUILD_OPTIONS), key + "/" + name, name);
    }

    /** gemm_mma.cl's build options (besides the common ones) for a C stored as {@code c}, a transpose pair and warp width. */
    static String mmaGemmOptions(DType c, boolean transA, boolean transB, int warpCols) {
        return " -DGEMM_C_DT=" + Launch.code(c) + " -DMMA_A_K=" + (transA ? 0 : 1) + " -DMMA_B_K=" + (transB ? 1 : 0)
                + " -DMMA_WN=" + warpCols;
    }

    /** {@code gemm_nn} or {@code gemm_nt} of gemm_cpu.cl (all-F32 products on CPU devices, float compute). */
    synchronized cl_kernel cpuGemmKernel(String name) {
        return kernel(program("gemm_cpu", Precision.FLOAT, CPU_GEMM_SOURCES, LaunchConfig.cpuGemmOptions()), "gemm_cpu/" + name, name);
    }

    /** A kernel of the attention program for a head-dimension bucket (one of {@link #ATTENTION_BUCKETS}). */
    synchronized cl_kernel attentionKernel(Precision p, int bucket, String name) {
        String key = "attention" + bucket + "/" + p;
        return kernel(program(key, p, ATTENTION_SOURCES, " -DATT_D=" + bucket + " -DATT_TILE_MAX=" + LaunchConfig.ATTENTION_TILE_MAX),
                key + "/" + name, name);
    }

    /** A kernel of flash_attention.cl (NVIDIA tensor cores) for head dimension 64 or 128 and 16-bit storage {@code t}. */
    synchronized cl_kernel flashKernel(int headDim, DType t, String name) {
        String key = "flash" + headDim + "-" + t;
        return kernel(program(key, Precision.FLOAT, FLASH_SOURCES, flashOptions(headDim, t)), key + "/" + name, name);
    }

    /** flash_attention.cl's build options (besides the common ones). */
    static String flashOptions(int headDim, DType t) {
        return " -DFA_D=" + headDim + (t == DType.F16 ? " -DFA_F16" : "");
    }

    private cl_program program(String key, Precision p, String[] files, String options) {
        cl_program program = programs.get(key);
        if (program == null) {
            program = build(key, p, files, options);
            programs.put(key, program);
        }
        return program;
    }

    /** The largest work-group the device allows for this kernel (register pressure can lower it below the device's). */
    long maxWorkGroupSize(cl_kernel k) {
        long[] v = new long[1];
        CL.clGetKernelWorkGroupInfo(k, device.device(), CL.CL_KERNEL_WORK_GROUP_SIZE, Sizeof.size_t, Pointer.to(v), null);
        return v[0];
    }

    private cl_program mainProgram(Precision p) {
        return program("main/" + p, p, MAIN_SOURCES, "");
    }

    private cl_kernel kernel(cl_program program, String key, String name) {
        cl_kernel k = kernels.get(key);
        if (k == null) {
            k = CL.clCreateKernel(program, name, null);
            kernels.put(key, k);
        }
        return k;
    }

    private cl_program build(String what, Precision p, String[] files, String extraOptions) {
        if (p == Precision.DOUBLE && !device.fp64())
            throw new UnsupportedOperationException(device.name() + " has no fp64 support: F64 tensors cannot be computed on it");
        List<String> sources = new ArrayList<>();
        sources.add(nf4Prelude());
        for (String f : files) sources.add(resource(f));
        String options = "-cl-std=CL1.2 " + config.buildOptions() + (p == Precision.DOUBLE ? " -DREAL_IS_DOUBLE" : "") + extraOptions;
        cl_program program = CL.clCreateProgramWithSource(context, sources.size(), sources.toArray(String[]::new), null, null);
        try {
            CL.clBuildProgram(program, 1, new cl_device_id[]{device.device()}, options, null, null);
        } catch (CLException e) {
            String log = buildLog(program);
            CL.clReleaseProgram(program);
            throw new IllegalStateException("OpenCL program " + what + " failed to build on " + device.name()
                    + " (" + e.getMessage() + ", options '" + options + "'):\n" + log, e);
        }
        if (Boolean.getBoolean("jsloth.opencl.buildLog")) // with -cl-nv-verbose (NVIDIA): registers and spills per kernel
            System.err.println("[opencl build] " + what + " (" + options + "):\n" + buildLog(program));
        return program;
    }

    private String buildLog(cl_program program) {
        try {
            long[] size = new long[1];
            CL.clGetProgramBuildInfo(program, device.device(), CL.CL_PROGRAM_BUILD_LOG, 0, null, size);
            byte[] buf = new byte[(int) size[0]];
            CL.clGetProgramBuildInfo(program, device.device(), CL.CL_PROGRAM_BUILD_LOG, buf.length, Pointer.to(buf), null);
            int n = buf.length;
            while (n > 0 && buf[n - 1] == 0) n--;
            return new String(buf, 0, n, StandardCharsets.UTF_8);
        } catch (RuntimeException e) {
            return "(build log unavailable: " + e + ")";
        }
    }

    /** The NF4 code table of {@link Nf4#CODE}, as exact hexadecimal float literals. */
    static String nf4Prelude() {
        StringBuilder sb = new StringBuilder("constant float NF4_CODE[16] = {");
        for (int i = 0; i < Nf4.CODE.length; i++) {
            if (i > 0) sb.append(", ");
            sb.append(Float.toHexString(Nf4.CODE[i]).toLowerCase(Locale.ROOT)).append('f');
        }
        return sb.append("};\n").toString();
    }

    static String resource(String name) {
        try (InputStream in = KernelLibrary.class.getResourceAsStream("kernels/" + name)) {
            if (in == null) throw new IllegalStateException("kernel source " + name + " is missing from the jar");
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    @Override
    public synchronized void close() {
        for (cl_kernel k : kernels.values()) CL.clReleaseKernel(k);
        kernels.clear();
        for (cl_program p : programs.values()) CL.clReleaseProgram(p);
        programs.clear();
    }
}
