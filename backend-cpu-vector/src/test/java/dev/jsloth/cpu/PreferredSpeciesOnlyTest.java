package dev.jsloth.cpu;

import jdk.incubator.vector.VectorSpecies;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.lang.reflect.Field;
import java.lang.reflect.Modifier;
import java.net.URISyntaxException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.jar.JarFile;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Every Vector API species this backend keeps in a constant is the preferred one for its element type. A second shape
 * of the same element type (e.g. 256-bit floats beside 512-bit ones) pollutes the type profiles C2 keeps inside the
 * Vector API's own methods, and a kernel compiled after it may then run with its vector calls not intrinsified: the
 * GEMM microkernel ran at 2-5 GFLOP/s instead of 150-200 after F32 runs had been widened through a half-width float
 * species (ElementCodec, until session 20).
 */
class PreferredSpeciesOnlyTest {
    @Test
    void everySpeciesConstantIsThePreferredOne() throws Exception {
        List<String> checked = new ArrayList<>();
        for (String name : backendClassNames()) {
            Class<?> type = Class.forName(name, true, PreferredSpeciesOnlyTest.class.getClassLoader());
            for (Field f : type.getDeclaredFields()) {
                if (!Modifier.isStatic(f.getModifiers()) || !VectorSpecies.class.isAssignableFrom(f.getType())) continue;
                f.setAccessible(true);
                VectorSpecies<?> species = (VectorSpecies<?>) f.get(null);
                assertEquals(VectorSpecies.ofPreferred(species.elementType()), species,
                        type.getSimpleName() + "." + f.getName() + " is " + species + ", not the preferred species of " + species.elementType());
                checked.add(type.getSimpleName() + "." + f.getName());
            }
        }
        // the test must have found the kernels' species (GemmMicrokernels.SP among them), or it checked nothing
        assertTrue(checked.contains("GemmMicrokernels.SP") && checked.contains("ElementCodec.FLOATS"), "species constants found: " + checked);
    }

    /** The classes of package dev.jsloth.cpu in the backend's own classes directory or jar. */
    private static List<String> backendClassNames() throws IOException, URISyntaxException {
        Path where = Path.of(GemmF32.class.getProtectionDomain().getCodeSource().getLocation().toURI());
        List<String> names = new ArrayList<>();
        if (Files.isDirectory(where)) {
            Path pkg = where.resolve("dev/jsloth/cpu");
            try (Stream<Path> files = Files.list(pkg)) {
                files.map(p -> p.getFileName().toString()).filter(n -> n.endsWith(".class"))
                        .forEach(n -> names.add("dev.jsloth.cpu." + n.substring(0, n.length() - ".class".length())));
            }
        } else {
            try (JarFile jar = new JarFile(where.toFile())) {
                jar.stream().map(e -> e.getName()).filter(n -> n.startsWith("dev/jsloth/cpu/") && n.endsWith(".class") && n.indexOf('/', 15) < 0)
                        .forEach(n -> names.add(n.substring(0, n.length() - ".class".length()).replace('/', '.')));
            }
        }
        assertTrue(!names.isEmpty(), "no classes found at " + where);
        return names;
    }
}
