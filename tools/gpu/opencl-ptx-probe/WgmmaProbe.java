import org.jocl.*;
import static org.jocl.CL.*;

import java.nio.charset.StandardCharsets;

/**
 * Can OpenCL C reach Hopper's wgmma? NVIDIA's OpenCL compiler emits PTX for {@code .target sm_90}, on which ptxas
 * rejects the warpgroup instructions (they need sm_90a). Two routes, each tried in a fresh context:
 * <ul>
 *   <li>"option": the kernel with live wgmma asm, built with {@code -cl-nv-arch sm_90a};</li>
 *   <li>"patch": the wgmma asm written as PTX comments ({@code //JSLOTH90A ...}, so the first build passes ptxas with
 *   the operands already substituted), the program's PTX (its "binary") read back, the markers and the target
 *   rewritten to live instructions and {@code sm_90a}, and the text built again with clCreateProgramWithBinary.</li>
 * </ul>
 * The kernel: one warpgroup, C[64 x 64] = A[64 x 64] B[64 x 64]^T from 128-byte-swizzled K-major local tiles (the
 * layout of the CUDA backend's wgmma attention), 4 x wgmma m64n64k16, against an exact reference (small integers).
 * <pre>
 *   javac -cp jocl-2.0.6.jar -d out WgmmaProbe.java ProbeGpu.java
 *   OCL_ICD_VENDORS=dir-with-nvidia.icd java -cp out:jocl-2.0.6.jar WgmmaProbe [option|patch]
 * </pre>
 */
public class WgmmaProbe {
    static final String MARK = "//JSLOTH90A ";

    static String source(boolean live) {
        StringBuilder acc = new StringBuilder(), outs = new StringBuilder();
        for (int i = 0; i < 32; i++) {
            acc.append(i == 0 ? "" : ",").append('%').append(i);
            outs.append(i == 0 ? "" : ", ").append("\"+f\"(d[").append(i).append("])");
        }
        return String.join("\n",
"#define WG(s) " + (live ? "s" : "\"" + MARK + "\" s"),
"inline ulong desc(uint address) {",
"  return (ulong) ((address & 0x3FFFF) >> 4) | ((ulong) 1 << 16) | ((ulong) (1024 >> 4) << 32) | ((ulong) 1 << 62);",
"}",
"__attribute__((reqd_work_group_size(128, 1, 1)))",
"kernel void probe(global float* out, global const ushort* a, global const ushort* b) {",
"  local ushort ta[64 * 64] __attribute__((aligned(1024)));",
"  local ushort tb[64 * 64] __attribute__((aligned(1024)));",
"  const int tid = get_local_id(0);",
"  for (int ch = tid; ch < 64 * 8; ch += 128) {",
"    const int r = ch >> 3, j = ch & 7, at = r * 64 + ((j ^ (r & 7)) << 3);",
"    for (int e = 0; e < 8; e++) { ta[at + e] = a[r * 64 + j * 8 + e]; tb[at + e] = b[r * 64 + j * 8 + e]; }",
"  }",
"  asm volatile(\"fence.proxy.async.shared::cta;\" ::: \"memory\");",
"  barrier(CLK_LOCAL_MEM_FENCE);",
"  float d[32];",
"  for (int i = 0; i < 32; i++) d[i] = 0.f;",
"  const uint aa = (uint) (size_t) ta, bb = (uint) (size_t) tb;",
"  asm volatile(WG(\"wgmma.fence.sync.aligned;\") ::: \"memory\");",
"  for (int kk = 0; kk < 4; kk++) {",
"    const ulong da = desc(aa + kk * 32), db = desc(bb + kk * 32);",
"    asm volatile(WG(\"{ .reg .pred p; setp.ne.b32 p, %34, 0; wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {"
        + acc + "}, %32, %33, p, 1, 1, 0, 0; }\")",
"                 : " + outs + " : \"l\"(da), \"l\"(db), \"r\"(1) : \"memory\");",
"  }",
"  asm volatile(WG(\"wgmma.commit_group.sync.aligned;\") ::: \"memory\");",
"  asm volatile(WG(\"wgmma.wait_group.sync.aligned 0;\") ::: \"memory\");",
"  const int w = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;",
"  for (int j = 0; j < 8; j++)",
"    for (int e = 0; e < 4; e++) out[(16 * w + g + 8 * (e >> 1)) * 64 + 8 * j + 2 * t + (e & 1)] = d[4 * j + e];",
"}");
    }

    public static void main(String[] args) {
        ProbeGpu.each(args.length > 0 ? args : new String[]{"patch", "option"}, WgmmaProbe::run);
    }

    static String ptx(cl_program prog) {
        long[] bs = new long[1];
        clGetProgramInfo(prog, CL_PROGRAM_BINARY_SIZES, Sizeof.size_t, Pointer.to(bs), null);
        byte[] bin = new byte[(int) bs[0]];
        clGetProgramInfo(prog, CL_PROGRAM_BINARIES, Sizeof.POINTER, Pointer.to(new Pointer[]{Pointer.to(bin)}), null);
        int end = bin.length;
        while (end > 0 && bin[end - 1] == 0) end--;
        return new String(bin, 0, end, StandardCharsets.ISO_8859_1);
    }

    static void run(String variant) {
        ProbeGpu gpu = ProbeGpu.first();
        if (gpu == null) return;
        cl_device_id dev = gpu.device(); cl_context ctx = gpu.context(); cl_command_queue q = gpu.queue();
        boolean live = variant.equals("option");
        cl_program prog = clCreateProgramWithSource(ctx, 1, new String[]{source(live)}, null, null);
        try {
            clBuildProgram(prog, 0, null, live ? "-cl-std=CL2.0 -cl-nv-arch sm_90a" : "-cl-std=CL2.0", null, null);
            System.out.println(variant + ": first build OK");
        } catch (CLException e) {
            System.out.println(variant + ": first build FAILED: " + e.getMessage() + "\n" + gpu.buildLog(prog));
            return;
        }
        String text = ptx(prog);
        for (String line : text.split("\n"))
            if (line.startsWith(".version") || line.startsWith(".target") || line.contains("wgmma"))
                System.out.println("  ptx| " + (line.length() > 220 ? line.strip().substring(0, 220) + "..." : line.strip()));
        if (!live) {
            String patched = text.replace(MARK, "").replaceFirst("(?m)^(\\.target\\s+)sm_90\\b", "$1sm_90a");
            byte[] bin = patched.getBytes(StandardCharsets.ISO_8859_1);
            int[] status = new int[1];
            prog = clCreateProgramWithBinary(ctx, 1, new cl_device_id[]{dev}, new long[]{bin.length},
                    new byte[][]{bin}, status, null);
            try {
                clBuildProgram(prog, 0, null, "", null, null);
                System.out.println(variant + ": patched PTX build OK (status " + status[0] + ")");
            } catch (CLException e) {
                System.out.println(variant + ": patched PTX build FAILED: " + e.getMessage() + "\n" + gpu.buildLog(prog));
                return;
            }
        }
        short[] a = new short[64 * 64], b = new short[64 * 64];
        float[] af = new float[64 * 64], bf = new float[64 * 64];
        for (int i = 0; i < 64 * 64; i++) {
            af[i] = (i * 7 % 11) - 5; a[i] = ProbeGpu.bf16(af[i]);
            bf[i] = (i * 5 % 7) - 3; b[i] = ProbeGpu.bf16(bf[i]);
        }
        cl_mem ma = clCreateBuffer(ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, 2L * a.length, Pointer.to(a), null);
        cl_mem mb = clCreateBuffer(ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, 2L * b.length, Pointer.to(b), null);
        cl_mem mo = clCreateBuffer(ctx, CL_MEM_WRITE_ONLY, 4L * 64 * 64, null, null);
        cl_kernel k = clCreateKernel(prog, "probe", null);
        clSetKernelArg(k, 0, Sizeof.cl_mem, Pointer.to(mo));
        clSetKernelArg(k, 1, Sizeof.cl_mem, Pointer.to(ma));
        clSetKernelArg(k, 2, Sizeof.cl_mem, Pointer.to(mb));
        clEnqueueNDRangeKernel(q, k, 1, null, new long[]{128}, new long[]{128}, 0, null, null);
        float[] out = new float[64 * 64];
        clEnqueueReadBuffer(q, mo, CL_TRUE, 0, 4L * out.length, Pointer.to(out), 0, null, null);
        double maxErr = 0;
        for (int i = 0; i < 64; i++) for (int j = 0; j < 64; j++) {
            double ref = 0;
            for (int kk = 0; kk < 64; kk++) ref += af[i * 64 + kk] * bf[j * 64 + kk];
            maxErr = Math.max(maxErr, Math.abs(ref - out[i * 64 + j]));
        }
        System.out.println(variant + ": wgmma C = A B^T max |error| vs reference: " + maxErr + (maxErr == 0 ? "  (exact)" : "  MISMATCH")
                + "  out[0..3] = " + out[0] + " " + out[1] + " " + out[2] + " " + out[3]);
    }
}
