package dev.jsloth.cuda;

import dev.jsloth.api.quant.Nf4;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * Compiles every CUDA source with nvcc for sm_90a (Hopper with its architecture-specific instructions, the target
 * the backend compiles for on compute capability 9.0; code for other GPUs sits in the same sources), instantiating every kernel of {@link KernelId} with every
 * element-type combination the backend may ask NVRTC for, so that syntax and template errors surface on a machine
 * without a GPU. Skipped, with the reason, when nvcc is not installed. Also checks the sources against the Java
 * side: the catalog's kernels exist, the only include is the shared header (NVRTC gets no include path), and the
 * NF4 code table equals the api's.
 */
class CudaKernelSourcesTest {
    private static final String ARCH = "sm_90a";
    private static Path dir;

    @BeforeAll
    static void writeSources() throws IOException {
        dir = Files.createTempDirectory("jsloth-cuda-sources");
        Files.writeString(dir.resolve(KernelId.COMMON_HEADER), KernelSources.read(KernelId.COMMON_HEADER));
        for (String f : KernelId.files()) Files.writeString(dir.resolve(f), KernelSources.read(f));
    }

    static Path nvcc() {
        String path = System.getenv("PATH");
        if (path != null) {
            for (String d : path.split(java.io.File.pathSeparator)) {
                Path p = Path.of(d, "nvcc");
                if (Files.isExecutable(p)) return p;
            }
        }
        for (String d : new String[]{System.getenv("CUDA_HOME"), "/usr/local/cuda"}) {
            if (d == null) continue;
            Path p = Path.of(d, "bin", "nvcc");
            if (Files.isExecutable(p)) return p;
        }
        return null;
    }

    /** The driver that includes one source and takes the address of every instantiation (which instantiates it). */
    static String driver(String file) {
        StringBuilder sb = new StringBuilder("#include \"").append(file).append("\"\n");
        sb.append("__device__ void* jsloth_instantiations[] = {\n");
        for (KernelId k : KernelId.values()) {
            if (!k.file.equals(file)) continue;
            for (List<ElementType> types : k.instantiations()) sb.append("    (void*) &").append(k.nameExpression(types)).append(",\n");
        }
        return sb.append("};\n").toString();
    }

    @TestFactory
    Stream<DynamicTest> everySourceCompilesWithNvcc() {
        Path nvcc = nvcc();
        return KernelId.files().stream().map(file -> DynamicTest.dynamicTest(file + " (nvcc " + ARCH + ")", () -> {
            Assumptions.assumeTrue(nvcc != null, "nvcc not found on PATH, in $CUDA_HOME/bin or /usr/local/cuda/bin: CUDA sources not compile-checked");
            Path drv = dir.resolve(file + ".check.cu");
            Files.writeString(drv, driver(file));
            Path out = dir.resolve(file + ".cubin");
            List<String> cmd = new ArrayList<>(List.of(nvcc.toString(), "-cubin", "-gencode=arch=compute_90a,code=" + ARCH, "-std=c++17",
                    "-Werror", "all-warnings", "-I" + dir, "-o", out.toString(), drv.toString()));
            Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
            String log = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            if (!p.waitFor(10, TimeUnit.MINUTES)) {
                p.destroyForcibly();
                fail("nvcc timed out on " + file);
            }
            if (p.exitValue() != 0) fail("nvcc failed on " + file + " (" + String.join(" ", cmd) + "):\n" + log);
            assertTrue(Files.size(out) > 0, "empty cubin for " + file);
            System.out.println("[nvcc] " + file + ": " + Files.size(out) + " bytes of " + ARCH + " code"
                    + (log.isBlank() ? "" : "\n" + log));
        }));
    }

    @Test
    void everyCatalogKernelIsATemplateInItsSource() {
        for (KernelId k : KernelId.values()) {
            String src = KernelSources.read(k.file);
            Matcher m = Pattern.compile("template\\s*<([^>]*)>\\s*__global__\\s+void\\s+" + Pattern.quote(k.function) + "\\s*\\(").matcher(src);
            assertTrue(m.find(), k + ": no template __global__ " + k.function + " in " + k.file);
            assertEquals(k.typeParameters, m.group(1).split(",").length, k + ": template parameter count");
        }
    }

    @Test
    void sourcesIncludeOnlyTheSharedHeader() {
        Pattern include = Pattern.compile("^\\s*#\\s*include\\s*(\\S+)", Pattern.MULTILINE);
        for (String f : KernelId.files()) {
            Matcher m = include.matcher(KernelSources.read(f));
            while (m.find()) assertEquals("\"" + KernelId.COMMON_HEADER + "\"", m.group(1), f + " includes " + m.group(1));
        }
        assertTrue(!include.matcher(KernelSources.read(KernelId.COMMON_HEADER)).find(), "the header includes nothing");
    }

    @Test
    void nf4CodeTableMatchesTheApi() {
        String src = KernelSources.read("convert.cu");
        Matcher m = Pattern.compile("NF4_CODE\\[16\\]\\s*=\\s*\\{([^}]*)\\}").matcher(src);
        assertTrue(m.find(), "NF4_CODE table in convert.cu");
        String[] literals = m.group(1).trim().split("\\s*,\\s*");
        assertEquals(16, literals.length);
        for (int i = 0; i < 16; i++)
            assertEquals(Nf4.CODE[i], Float.parseFloat(literals[i].replace("f", "")), "NF4 code " + i);
    }

    @Test
    void crossEntropyThreadCountMatchesTheSource() {
        assertTrue(KernelSources.read("cross_entropy.cu").contains("#define CE_THREADS " + CrossEntropyOp.THREADS));
    }
}
