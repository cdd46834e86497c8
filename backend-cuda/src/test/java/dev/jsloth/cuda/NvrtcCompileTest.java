package dev.jsloth.cuda;

import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The NVRTC binding and {@link KernelCompiler} end to end, without a GPU (NVRTC compiles on the host): every kernel
 * source is compiled header-less for sm_90 as the backend does it, with the name expressions of one element type
 * for all parameters and of one mixed combination, and every kernel's lowered name comes back; a second compilation
 * comes from the disk cache; a broken source fails with NVRTC's log. Skipped, with the reason, when no NVRTC
 * library loads ({@code libnvrtc.so.13}/{@code .12}, or an older {@code .11.2} for this test).
 */
class NvrtcCompileTest {
    private static Optional<Nvrtc> nvrtc() {
        List<String> names = new ArrayList<>(Nvrtc.LIBRARIES);
        names.add("libnvrtc.so.11.2");
        return NativeLibraries.load(names).map(Nvrtc::new);
    }


    @Test
    void everyKernelSourceCompilesWithNvrtcAndLowersItsNames() throws Exception {
        Optional<Nvrtc> found = nvrtc();
        Assumptions.assumeTrue(found.isPresent(), "NVRTC not found: " + NativeLibraries.describeSearch(Nvrtc.LIBRARIES));
        Nvrtc nvrtc = found.get();
        Path cacheDir = Files.createTempDirectory("jsloth-nvrtc-cache");
        KernelCompiler compiler = new KernelCompiler(nvrtc, new KernelCache(cacheDir));
        long t0 = System.nanoTime();
        int programs = 0;
        for (String file : KernelId.files()) {
            Map<Integer, List<KernelId>> byArity = new LinkedHashMap<>();
            for (KernelId k : KernelId.values()) if (k.file.equals(file)) byArity.computeIfAbsent(k.typeParameters, a -> new ArrayList<>()).add(k);
            for (Map.Entry<Integer, List<KernelId>> group : byArity.entrySet()) {
                List<List<ElementType>> typeLists = new ArrayList<>();
                for (ElementType t : ElementType.values()) typeLists.add(java.util.Collections.nCopies(group.getKey(), t));
                if (group.getKey() == 2) typeLists.add(List.of(ElementType.F32, ElementType.F64));
                for (List<ElementType> types : typeLists) {
                    List<String> expressions = group.getValue().stream().map(k -> k.nameExpression(types)).toList();
                    Nvrtc.Program p = compiler.compile(file, expressions, "sm_90");
                    programs++;
                    assertTrue(p.cubin() && p.image().length > 0, file + " " + types + ": no CUBIN");
                    for (String e : expressions) {
                        String lowered = p.loweredNames().get(e);
                        assertTrue(lowered != null && lowered.startsWith("_Z"), file + ": " + e + " lowered to " + lowered);
                    }
                    if (!p.log().isBlank() && !p.log().startsWith("(from")) System.out.println("[nvrtc] " + file + " " + types + " log:\n" + p.log());
                }
            }
        }
        double seconds = (System.nanoTime() - t0) / 1e9;
        long t1 = System.nanoTime();
        // the same program as the loop's F32 one for elementwise.cu: its one-type kernels in catalog order
        List<String> elementwise = new ArrayList<>();
        for (KernelId k : KernelId.values())
            if (k.file.equals("elementwise.cu") && k.typeParameters == 1) elementwise.add(k.nameExpression(List.of(ElementType.F32)));
        Nvrtc.Program again = compiler.compile("elementwise.cu", elementwise, "sm_90");
        assertTrue(again.log().startsWith("(from "), "second compilation served from the disk cache");
        System.out.printf(Locale.ROOT, "[nvrtc] NVRTC %s (%s): %d programs compiled for sm_90 in %.1f s; cached reload %.0f ms%n",
                nvrtc.version(), nvrtc.location(), programs, seconds, (System.nanoTime() - t1) / 1e6);
    }

    @Test
    void aCompileErrorCarriesTheProgramLog() {
        Optional<Nvrtc> found = nvrtc();
        Assumptions.assumeTrue(found.isPresent(), "NVRTC not found: " + NativeLibraries.describeSearch(Nvrtc.LIBRARIES));
        CudaException e = assertThrows(CudaException.class, () -> found.get().compile("broken.cu",
                "__global__ void k(float* x) { x[0] = undefined_name; }", Map.of(), KernelCompiler.options("sm_90"), List.of("k")));
        assertTrue(e.getMessage().contains("NVRTC_ERROR_COMPILATION") && e.getMessage().contains("undefined_name"), e.getMessage());
        assertEquals(6, e.code());
        assertTrue(Arrays.asList(Nvrtc.LIBRARIES.toArray()).contains("libnvrtc.so.13"));
    }
}
