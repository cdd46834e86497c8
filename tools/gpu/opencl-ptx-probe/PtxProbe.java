import org.jocl.*;
import static org.jocl.CL.*;

/**
 * Does NVIDIA's OpenCL compiler take inline PTX? One warp multiplies a 16 x 16 bf16 tile by a 16 x 8 one with
 * {@code mma.sync.m16n8k16} from OpenCL C, its A fragments loaded four ways: ordinary loads from global memory
 * ("global"), plain local loads from a tile filled by {@code cp.async} ("cpasync"), and {@code ldmatrix} from
 * {@code __local} memory at an address from {@code cvta.to.shared} ("cvta") or from the pointer itself ("direct");
 * each in a fresh context (or one per process: {@code PtxProbe direct}), against an exact reference (small integers).
 * "wgmma" tries to build a kernel holding {@code wgmma.fence} (and runs the "global" product; in session 9 its output
 * came back as unreadable bytes, so its result is unknown). Each build prints the PTX's
 * {@code .version}/{@code .target} lines. Measured on an H200, driver 580.159.04: session 8, with a tile only 2-byte
 * aligned, both ldmatrix forms faulted (CL_OUT_OF_RESOURCES); session 9, the tile 16-byte aligned: "global",
 * "cpasync", "direct" and "cvta" all give the exact product, and the compiler targets {@code sm_90} (not sm_90a), on
 * which ptxas rejects wgmma (NOTES.md, sessions 8 and 9).
 *
 * <pre>
 *   javac -cp jocl-2.0.6.jar -d out PtxProbe.java ProbeGpu.java   (here)
 *   OCL_ICD_VENDORS=dir-with-nvidia.icd java -cp out:jocl-2.0.6.jar PtxProbe   (on the GPU machine)
 * </pre>
 */
public class PtxProbe {
    static String source(String variant) {
        return String.join("\n",

"#define LOAD_A_" + variant,
"#ifdef LOAD_A_wgmma",
"__kernel void fence_only(__global float* out) { asm volatile(\"wgmma.fence.sync.aligned;\" ::: \"memory\"); out[0] = 1.f; }",
"#endif",
"__kernel void probe(__global float* out, __global const ushort* a, __global const ushort* b) {",
"  __local ushort tile[16 * 16] __attribute__((aligned(16)));",
"  const int lane = get_local_id(0);",
"#ifdef LOAD_A_cpasync",
"  { const uint dst = (uint) (size_t) (tile + lane * 8);",
"    asm volatile(\"cp.async.cg.shared.global [%0], [%1], 16;\" :: \"r\"(dst), \"l\"(a + lane * 8));",
"    asm volatile(\"cp.async.commit_group;\"); asm volatile(\"cp.async.wait_group 0;\"); }",
"#else",
"  for (int i = lane; i < 256; i += 32) tile[i] = a[i];",
"#endif",
"  barrier(CLK_LOCAL_MEM_FENCE);",
"  const int g = lane >> 2, t = lane & 3;",
"  uint ra[4];",
"#if defined(LOAD_A_cpasync)",
"  ra[0] = *(local const uint*) (tile + g * 16 + 2 * t); ra[1] = *(local const uint*) (tile + (g + 8) * 16 + 2 * t);",
"  ra[2] = *(local const uint*) (tile + g * 16 + 2 * t + 8); ra[3] = *(local const uint*) (tile + (g + 8) * 16 + 2 * t + 8);",
"#elif defined(LOAD_A_global) || defined(LOAD_A_wgmma)",
"  ra[0] = (uint) a[g * 16 + 2 * t] | ((uint) a[g * 16 + 2 * t + 1] << 16);",
"  ra[1] = (uint) a[(g + 8) * 16 + 2 * t] | ((uint) a[(g + 8) * 16 + 2 * t + 1] << 16);",
"  ra[2] = (uint) a[g * 16 + 2 * t + 8] | ((uint) a[g * 16 + 2 * t + 9] << 16);",
"  ra[3] = (uint) a[(g + 8) * 16 + 2 * t + 8] | ((uint) a[(g + 8) * 16 + 2 * t + 9] << 16);",
"#else",
"  __local ushort* row = tile + (lane % 16) * 16 + (lane / 16) * 8;",
"#ifdef LOAD_A_cvta",
"  uint addr; asm volatile(\"{ .reg .u64 t64; cvta.to.shared.u64 t64, %1; cvt.u32.u64 %0, t64; }\" : \"=r\"(addr) : \"l\"((ulong) (void*) row));",
"#else",
"  const uint addr = (uint) (size_t) row;",
"#endif",
"  asm volatile(\"ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\" : \"=r\"(ra[0]), \"=r\"(ra[1]), \"=r\"(ra[2]), \"=r\"(ra[3]) : \"r\"(addr));",
"#endif",
"  uint b0 = (uint) b[(2 * t) * 8 + g] | ((uint) b[(2 * t + 1) * 8 + g] << 16);",
"  uint b1 = (uint) b[(2 * t + 8) * 8 + g] | ((uint) b[(2 * t + 9) * 8 + g] << 16);",
"  float c0 = 0.f, c1 = 0.f, c2 = 0.f, c3 = 0.f;",
"  asm volatile(\"mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\"",
"      : \"+f\"(c0), \"+f\"(c1), \"+f\"(c2), \"+f\"(c3) : \"r\"(ra[0]), \"r\"(ra[1]), \"r\"(ra[2]), \"r\"(ra[3]), \"r\"(b0), \"r\"(b1));",
"  out[(g) * 8 + 2 * t] = c0; out[(g) * 8 + 2 * t + 1] = c1; out[(g + 8) * 8 + 2 * t] = c2; out[(g + 8) * 8 + 2 * t + 1] = c3;",
"}");
    }

    public static void main(String[] args) {
        // a fault can leave the device unusable for the rest of the process: give one variant per run to isolate them
        ProbeGpu.each(args.length > 0 ? args : new String[]{"global", "cpasync", "direct", "cvta", "wgmma"}, PtxProbe::run);
    }

    static void run(String variant) {
        ProbeGpu gpu = ProbeGpu.first();
        if (gpu == null) return;
        cl_device_id dev = gpu.device(); cl_context ctx = gpu.context(); cl_command_queue q = gpu.queue();
        byte[] name = new byte[256]; clGetDeviceInfo(dev, CL_DEVICE_NAME, 256, Pointer.to(name), null);
        byte[] ver = new byte[256]; clGetDeviceInfo(dev, CL_DRIVER_VERSION, 256, Pointer.to(ver), null);
        System.out.println("device " + new String(name).trim() + " driver " + new String(ver).trim());
        cl_program prog = clCreateProgramWithSource(ctx, 1, new String[]{source(variant)}, null, null);
        try {
            clBuildProgram(prog, 0, null, "-cl-std=CL2.0", null, null);
            System.out.println(variant + ": BUILD OK");
            long[] bs = new long[1];
            clGetProgramInfo(prog, CL_PROGRAM_BINARY_SIZES, Sizeof.size_t, Pointer.to(bs), null);
            byte[] bin = new byte[(int) bs[0]];
            clGetProgramInfo(prog, CL_PROGRAM_BINARIES, Sizeof.POINTER, Pointer.to(new Pointer[]{Pointer.to(bin)}), null);
            String ptx = new String(bin, java.nio.charset.StandardCharsets.ISO_8859_1);
            for (String line : ptx.split("\n"))
                if (line.startsWith(".version") || line.startsWith(".target") || line.startsWith(".address_size")
                        || line.contains("ldmatrix") || line.contains("cp.async") || line.contains("wgmma"))
                    System.out.println("  ptx| " + line.strip());
        } catch (CLException e) {
            System.out.println("BUILD FAILED: " + e.getMessage() + "\n" + gpu.buildLog(prog));
            return;
        }
        short[] a = new short[256], b = new short[128];
        float[] af = new float[256], bf = new float[128];
        for (int i = 0; i < 256; i++) { af[i] = (i % 7) - 3; a[i] = ProbeGpu.bf16(af[i]); }
        for (int i = 0; i < 128; i++) { bf[i] = (i % 5) - 2; b[i] = ProbeGpu.bf16(bf[i]); }
        cl_mem ma = clCreateBuffer(ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, 512, Pointer.to(a), null);
        cl_mem mb = clCreateBuffer(ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, 256, Pointer.to(b), null);
        cl_mem mo = clCreateBuffer(ctx, CL_MEM_WRITE_ONLY, 128 * 4, null, null);
        cl_kernel k = clCreateKernel(prog, "probe", null);
        clSetKernelArg(k, 0, Sizeof.cl_mem, Pointer.to(mo));
        clSetKernelArg(k, 1, Sizeof.cl_mem, Pointer.to(ma));
        clSetKernelArg(k, 2, Sizeof.cl_mem, Pointer.to(mb));
        clEnqueueNDRangeKernel(q, k, 1, null, new long[]{32}, new long[]{32}, 0, null, null);
        float[] out = new float[128];
        clEnqueueReadBuffer(q, mo, CL_TRUE, 0, 512, Pointer.to(out), 0, null, null);
        // C[16 x 8] = A[16 x 16] (row-major tile) * B[16 x 8] (b[k * 8 + n])
        double maxErr = 0;
        for (int i = 0; i < 16; i++) for (int j = 0; j < 8; j++) {
            double ref = 0; for (int kk = 0; kk < 16; kk++) ref += af[i * 16 + kk] * bf[kk * 8 + j];
            maxErr = Math.max(maxErr, Math.abs(ref - out[i * 8 + j]));
        }
        System.out.println(variant + ": mma result max |error| vs reference: " + maxErr + (maxErr == 0 ? "  (exact)" : "  MISMATCH"));
    }
}
