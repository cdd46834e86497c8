package dev.jsloth.cuda;

import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * Executes the CUDA kernels on the host, where there is no GPU: the sources are compiled as C++ together with a
 * small emulation of CUDA blocks (real threads, barriers, warp shuffles; see {@code emulation/threaded_shim.h}) and
 * a harness that runs every kernel family over random small problems against naive references
 * ({@code emulation/kernels_emulation.cpp}). This checks the kernels' arithmetic, indexing, masking, tiling and
 * reductions; not their speed, nor anything specific to GPU hardware. Skipped, with the reason, without a C++20
 * compiler.
 */
class CudaKernelEmulationTest {
    private static final List<String> EMULATION = List.of("threaded_shim.h", "kernels_emulation.cpp");

    static Path compiler() {
        String path = System.getenv("PATH");
        if (path == null) return null;
        for (String name : new String[]{"g++", "c++", "clang++"})
            for (String d : path.split(java.io.File.pathSeparator)) {
                Path p = Path.of(d, name);
                if (Files.isExecutable(p)) return p;
            }
        return null;
    }

    private static String run(List<String> cmd, Path dir, int minutes) throws IOException, InterruptedException {
        Process p = new ProcessBuilder(cmd).directory(dir.toFile()).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        if (!p.waitFor(minutes, TimeUnit.MINUTES)) {
            p.destroyForcibly();
            fail(cmd.getFirst() + " timed out");
        }
        if (p.exitValue() != 0) fail(String.join(" ", cmd) + " exited with " + p.exitValue() + ":\n" + out);
        return out;
    }

    @Test
    void kernelsMatchNaiveReferencesUnderHostEmulation() throws Exception {
        Path cxx = compiler();
        Assumptions.assumeTrue(cxx != null, "no C++ compiler (g++, c++ or clang++) on PATH: CUDA kernels not executed on the host");
        Path dir = Files.createTempDirectory("jsloth-cuda-emulation");
        Files.writeString(dir.resolve(KernelId.COMMON_HEADER), KernelSources.read(KernelId.COMMON_HEADER));
        for (String f : KernelId.files()) Files.writeString(dir.resolve(f), KernelSources.read(f));
        for (String f : EMULATION) {
            try (InputStream in = CudaKernelEmulationTest.class.getResourceAsStream("emulation/" + f)) {
                assertTrue(in != null, "test resource emulation/" + f);
                Files.write(dir.resolve(f), in.readAllBytes());
            }
        }
        run(List.of(cxx.toString(), "-std=c++20", "-O1", "-pthread", "-I" + dir, "-o", "kernels_emulation", "kernels_emulation.cpp"), dir, 5);
        String out = run(List.of(dir.resolve("kernels_emulation").toString()), dir, 10);
        System.out.println("[emulation] " + out.strip());
        assertTrue(out.startsWith("OK"), out);
    }
}
