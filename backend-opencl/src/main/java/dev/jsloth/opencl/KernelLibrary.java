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
    static final String[] MMA_GEMM_SOURCES = {"common.cl", "tensor_cores.cl", "gemm_mma.cl", "gemm_wgmma.cl"};
    /** What gemm_wgmma.cl puts before each sm_90a instruction so that the first build (sm_90) reads it as a comment. */
    static final String SM90A_MARKER = "//JSLOTH90A ";
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
     * A kernel of the tensor-core GEMM program ({@code gemm_mma}, {@code gemm_wgmma} or {@code gemm_splitk_sum}) for a C
     * stored as {@code c} and this transpose pair (the operands' storage orders are compile-time there). Where the
     * configuration runs wgmma, the program is rebuilt for sm_90a ({@link #ptxForSm90a}).
     */
    synchronized cl_kernel mmaGemmKernel(DType c, boolean transA, boolean transB, String name) {
        String key = "gemm_mma-" + c + (transA ? "-tA" : "") + (transB ? "-tB" : "");
        cl_program program = programs.get(key);
        if (program == null) {
            program = build(key, Precision.FLOAT, MMA_GEMM_SOURCES, mmaGemmOptions(c, transA, transB, LaunchConfig.MMA_WARP_COLS)
                    + " " + LaunchConfig.MMA_BUILD_OPTIONS);
            if (config.wgmma()) program = rebuildForSm90a(key, program);
            programs.put(key, program);
        }
        return kernel(program, key + "/" + name, name);
    }

    /**
     * The program rebuilt from its own PTX (NVIDIA's program binaries are PTX text) made sm_90a code: the instructions
     * written as {@link #SM90A_MARKER} comments become live. The first program is released.
     */
    private cl_program rebuildForSm90a(String what, cl_program built) {
        String ptx;
        try {
            ptx = ptxForSm90a(programBinary(built));
        } finally {
            CL.clReleaseProgram(built);
        }
        byte[] text = ptx.getBytes(StandardCharsets.ISO_8859_1);
        int[] status = new int[1];
        cl_program program = CL.clCreateProgramWithBinary(context, 1, new cl_device_id[]{device.device()}, new long[]{text.length},
                new byte[][]{text}, status, null);
        try {
            CL.clBuildProgram(program, 1, new cl_device_id[]{device.device()}, LaunchConfig.MMA_BUILD_OPTIONS, null, null);
        } catch (CLException e) {
            String log = buildLog(program);
            CL.clReleaseProgram(program);
            throw new IllegalStateException("OpenCL program " + what + " failed to build for sm_90a on " + device.name()
                    + " (" + e.getMessage() + "; -Djsloth.opencl.wgmma=false keeps gemm_mma):\n" + log, e);
        }
        if (Boolean.getBoolean("jsloth.opencl.buildLog"))
            System.err.println("[opencl build] " + what + " rebuilt for sm_90a:\n" + buildLog(program));
        return program;
    }

    /**
     * PTX from NVIDIA's OpenCL compiler, for {@code .target sm_90}, made sm_90a code: the {@link #SM90A_MARKER}
     * comments removed (their instructions become live), the target set to sm_90a and the ISA version raised to 8.0
     * where lower (wgmma needs both). Throws where the text is not such PTX.
     */
    static String ptxForSm90a(String ptx) {
        java.util.regex.Matcher target = java.util.regex.Pattern.compile("(?m)^(\\.target\\s+)sm_90\\b").matcher(ptx);
        if (!target.find())
            throw new IllegalStateException("the tensor-core GEMM program's binary is not PTX for .target sm_90 (no '.target sm_90' line):"
                    + " cannot make it sm_90a code; -Djsloth.opencl.wgmma=false keeps gemm_mma");
        String out = target.replaceFirst("$1sm_90a").replace(SM90A_MARKER, "");
        java.util.regex.Matcher version = java.util.regex.Pattern.compile("(?m)^\\.version\\s+(\\d+)\\.(\\d+)").matcher(out);
        if (version.find() && Integer.parseInt(version.group(1)) < 8) out = version.replaceFirst(".version 8.0");
        return out;
    }

    /** A built program's binary: PTX text on NVIDIA (trailing NULs dropped). */
    private String programBinary(cl_program program) {
        long[] size = new long[1];
        CL.clGetProgramInfo(program, CL.CL_PROGRAM_BINARY_SIZES, Sizeof.size_t, Pointer.to(size), null);
        byte[] bin = new byte[Math.toIntExact(size[0])];
        CL.clGetProgramInfo(program, CL.CL_PROGRAM_BINARIES, Sizeof.POINTER, Pointer.to(new Pointer[]{Pointer.to(bin)}), null);
        int n = bin.length;
        while (n > 0 && bin[n - 1] == 0) n--;
        return new String(bin, 0, n, StandardCharsets.ISO_8859_1);
    }

    /** gemm_mma.cl's build options (besides the common ones) for a C stored as {@code c}, a transpose pair and warp width. */
    static String mmaGemmOptions(DType c, boolean transA, boolean transB, int warpCols) {
        return mmaGemmOptions(c, transA, transB, warpCols, LaunchConfig.WGMMA_OVERLAP);
    }

    /** The same with gemm_wgmma's K loop overlapped or not (WG_OVERLAP). */
    static String mmaGemmOptions(DType c, boolean transA, boolean transB, int warpCols, boolean overlap) {
        return " -DGEMM_C_DT=" + Launch.code(c) + " -DMMA_A_K=" + (transA ? 0 : 1) + " -DMMA_B_K=" + (transB ? 1 : 0)
                + " -DMMA_WN=" + warpCols + " -DWG_OVERLAP=" + (overlap ? 1 : 0);
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
            long[] required = new long[3];
            CL.clGetKernelWorkGroupInfo(k, device.device(), CL.CL_KERNEL_COMPILE_WORK_GROUP_SIZE, 3L * Sizeof.size_t, Pointer.to(required), null);
            String refused = refusedWorkGroup(key, required, maxWorkGroupSize(k), device.name());
            if (refused != null) {
                CL.clReleaseKernel(k);
                throw new UnsupportedOperationException(refused);
            }
            kernels.put(key, k);
        }
        return k;
    }

    /**
     * Why a kernel cannot run here, or null: its {@code reqd_work_group_size} ({@code required}, all zero where it has
     * none) holds more work-items than {@code allowed} ({@code CL_KERNEL_WORK_GROUP_SIZE}: the device's limit, or lower
     * where the kernel's registers or local memory take more). Found when the kernel is made, so the error names it,
     * rather than an {@code CL_INVALID_WORK_GROUP_SIZE} at its first launch.
     */
    static String refusedWorkGroup(String kernel, long[] required, long allowed, String deviceName) {
        long items = required[0] * required[1] * required[2];
        if (items <= allowed) return null; // no requirement (0), or it fits
        return "OpenCL kernel " + kernel + " needs work-groups of " + required[0] + " x " + required[1] + " x " + required[2]
                + " = " + items + " work-items (reqd_work_group_size), but " + deviceName + " runs it in groups of at most "
                + allowed + " (CL_KERNEL_WORK_GROUP_SIZE); this device cannot run it";
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
