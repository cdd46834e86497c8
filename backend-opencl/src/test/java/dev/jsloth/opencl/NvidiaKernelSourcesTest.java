package dev.jsloth.opencl;

import dev.jsloth.api.DType;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * Compiles the OpenCL programs that only NVIDIA GPUs build (gemm_mma.cl, flash_attention.cl: inline PTX for the tensor
 * cores) with clang for the {@code nvptx64-nvidia-nvcl} target, every variant the backend asks for (C type x transpose
 * pair x warp width; head dimension x 16-bit type), with the sources and options the backend uses, so that OpenCL C
 * errors in them surface on a machine without such a GPU (as CudaKernelSourcesTest does for the CUDA sources with
 * nvcc). clang checks the OpenCL C and lowers it to PTX with the inline assembly in place (ptxas, which would check
 * that assembly, needs the driver's built-ins; the GPU runs check the rest). Skipped, with the reason, where no clang
 * that targets NVPTX is installed.
 */
class NvidiaKernelSourcesTest {
    /** The first clang on PATH (clang, then clang-20 .. clang-14) that lists the NVPTX target. */
    static Path clang() {
        String path = System.getenv("PATH");
        if (path == null) return null;
        List<String> names = new ArrayList<>(List.of("clang"));
        for (int v = 20; v >= 14; v--) names.add("clang-" + v);
        for (String name : names)
            for (String d : path.split(java.io.File.pathSeparator)) {
                Path p = Path.of(d, name);
                if (Files.isExecutable(p) && targets(p)) return p;
            }
        return null;
    }

    private static boolean targets(Path clang) {
        try {
            Process p = new ProcessBuilder(clang.toString(), "--print-targets").redirectErrorStream(true).start();
            String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            return p.waitFor(30, TimeUnit.SECONDS) && p.exitValue() == 0 && out.contains("nvptx64");
        } catch (IOException | InterruptedException e) {
            return false;
        }
    }

    /** wgmma: the program holds gemm_wgmma.cl, whose sm_90a instructions KernelLibrary.ptxForSm90a makes live. */
    private record Variant(String name, String[] files, String options, String mustContain, boolean wgmma) {
    }

    private static List<Variant> variants() {
        List<Variant> v = new ArrayList<>();
        for (DType c : new DType[]{DType.F32, DType.BF16})
            for (boolean ta : new boolean[]{false, true})
                for (boolean tb : new boolean[]{false, true})
                    for (int wn : new int[]{32, 64}) // gemm_wgmma's overlapped K loop compiled with the 64-column warps
                        v.add(new Variant("gemm_mma C=" + c + (ta ? " A^T" : "") + (tb ? " B^T" : "") + " warps 64x" + wn
                                + (wn == 64 ? " wgmma overlapped" : ""), KernelLibrary.MMA_GEMM_SOURCES,
                                KernelLibrary.mmaGemmOptions(c, ta, tb, wn, wn == 64), "mma.sync.aligned.m16n8k16", true));
        for (int d : new int[]{64, 128})
            for (DType t : new DType[]{DType.BF16, DType.F16})
                v.add(new Variant("flash_attention D=" + d + " " + t, KernelLibrary.FLASH_SOURCES, KernelLibrary.flashOptions(d, t),
                        "ldmatrix.sync.aligned.m8n8.x4.trans", false));
        return v;
    }

    @TestFactory
    Stream<DynamicTest> tensorCoreProgramsCompileForNvptx() throws IOException {
        Path clang = clang();
        Path dir = Files.createTempDirectory("jsloth-opencl-nvptx");
        return variants().stream().map(v -> DynamicTest.dynamicTest(v.name(), () -> {
            Assumptions.assumeTrue(clang != null, "no clang with the NVPTX target on PATH: the NVIDIA-only OpenCL programs are not compile-checked");
            StringBuilder src = new StringBuilder(KernelLibrary.nf4Prelude());
            for (String f : v.files()) src.append(KernelLibrary.resource(f)).append('\n');
            String stem = v.name().replaceAll("[^A-Za-z0-9]+", "_");
            Path in = dir.resolve(stem + ".cl"), out = dir.resolve(stem + ".ptx");
            Files.writeString(in, src);
            List<String> cmd = new ArrayList<>(List.of(clang.toString(), "-x", "cl", "-cl-std=CL1.2", "-target", "nvptx64-nvidia-nvcl",
                    "-Xclang", "-finclude-default-header", "-Dasm=__asm__", "-O1", "-S", "-Werror=implicit-function-declaration"));
            cmd.addAll(Arrays.asList(v.options().trim().split("\\s+")));
            cmd.addAll(List.of("-o", out.toString(), in.toString()));
            Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
            String log = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            if (!p.waitFor(5, TimeUnit.MINUTES)) {
                p.destroyForcibly();
                fail("clang timed out on " + v.name());
            }
            if (p.exitValue() != 0) fail("clang failed on " + v.name() + " (" + String.join(" ", cmd) + "):\n" + log);
            String ptx = Files.readString(out);
            assertTrue(ptx.contains(v.mustContain()), v.name() + ": no " + v.mustContain() + " in the PTX");
            if (v.wgmma()) {
                // the first build must assemble for sm_8x too: no sm_90 instruction outside the markers
                long bare = ptx.lines().filter(l -> !l.strip().startsWith("//")
                        && (l.contains("wgmma.") || l.contains("fence.proxy.async"))).count();
                assertTrue(bare == 0, v.name() + ": " + bare + " sm_90 instruction(s) outside the SM90A markers");
                // NVIDIA's compiler targets sm_90 on an H100/H200 (clang 15 knows no sm_90: its target line stands in)
                String sm90a = KernelLibrary.ptxForSm90a(ptx.replaceFirst("(?m)^\\.target\\s+sm_\\d+", ".target sm_90"));
                assertTrue(sm90a.contains("\n.target sm_90a"), v.name() + ": target not made sm_90a");
                assertTrue(sm90a.contains("\n.version 8.0"), v.name() + ": PTX ISA version not raised to 8.0");
                assertTrue(!sm90a.contains(KernelLibrary.SM90A_MARKER.trim()), v.name() + ": a marker is left");
                for (String shape : new String[]{"m64n128k16", "m64n16k16"}) { // gemm_wgmma, gemm_wgmma_narrow
                    long live = sm90a.lines().filter(l -> l.strip().startsWith("{ .reg .pred p; setp.ne.b32 p,")
                            && l.contains("wgmma.mma_async.sync.aligned." + shape + ".f32.bf16.bf16")).count();
                    assertTrue(live >= 2, v.name() + ": expected the 2 " + shape + " wgmma of a 32-column slice as live PTX, found " + live);
                }
            }
        }));
    }

    @org.junit.jupiter.api.Test
    void ptxForSm90aRefusesWhatIsNotSm90Ptx() {
        IllegalStateException e = org.junit.jupiter.api.Assertions.assertThrows(IllegalStateException.class,
                () -> KernelLibrary.ptxForSm90a("\u007fELF binary"));
        assertTrue(e.getMessage().contains("not PTX for .target sm_90"), e.getMessage());
        assertTrue(KernelLibrary.ptxForSm90a(".version 9.0\n.target sm_90, texmode_independent\n//JSLOTH90A wgmma.fence.sync.aligned;\n")
                .equals(".version 9.0\n.target sm_90a, texmode_independent\nwgmma.fence.sync.aligned;\n"));
    }
}
