package dev.jsloth.cuda;

import java.io.File;
import java.lang.foreign.Arena;
import java.lang.foreign.SymbolLookup;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Optional;
import java.util.Set;

/**
 * Finds the CUDA shared libraries: each candidate name first through the dynamic linker's own search
 * ({@code LD_LIBRARY_PATH}, the ldconfig cache), then as a file in the usual CUDA directories. Extra directories
 * come from the system property {@value #PROPERTY} or the environment variable {@value #ENV} (path lists).
 */
final class NativeLibraries {
    static final String PROPERTY = "jsloth.cuda.libPath";
    static final String ENV = "JSLOTH_CUDA_LIB_PATH";

    /** A loaded library and where it was found. */
    record Loaded(SymbolLookup lookup, String location) {
    }

    private NativeLibraries() {
    }

    /** The first of {@code names} that loads, or empty. Libraries stay loaded for the life of the JVM. */
    static Optional<Loaded> load(List<String> names) {
        for (String name : names) {
            try {
                return Optional.of(new Loaded(SymbolLookup.libraryLookup(name, Arena.global()), name));
            } catch (IllegalArgumentException | UnsatisfiedLinkError notOnLinkerPath) {
                // try the directories below
            }
        }
        for (Path dir : searchDirectories()) {
            for (String name : names) {
                Path file = dir.resolve(name);
                if (!Files.isRegularFile(file)) continue;
                try {
                    return Optional.of(new Loaded(SymbolLookup.libraryLookup(file, Arena.global()), file.toString()));
                } catch (IllegalArgumentException | UnsatisfiedLinkError unusable) {
                    // e.g. wrong architecture or a missing dependency: keep looking
                }
            }
        }
        return Optional.empty();
    }

    /** Where {@link #load} looks after the dynamic linker, in order. */
    static List<Path> searchDirectories() {
        Set<String> dirs = new LinkedHashSet<>();
        addPathList(dirs, System.getProperty(PROPERTY));
        addPathList(dirs, System.getenv(ENV));
        for (String home : new String[]{System.getenv("CUDA_HOME"), System.getenv("CUDA_PATH")}) {
            if (home != null && !home.isBlank()) {
                dirs.add(home + "/lib64");
                dirs.add(home + "/lib");
            }
        }
        dirs.add("/usr/local/cuda/lib64");
        dirs.add("/usr/local/cuda/targets/x86_64-linux/lib");
        dirs.add("/usr/local/nvidia/lib64");
        dirs.add("/usr/local/nvidia/lib");
        dirs.add("/usr/lib/x86_64-linux-gnu");
        dirs.add("/usr/lib64");
        dirs.add("/usr/lib/wsl/lib");
        List<Path> out = new ArrayList<>();
        for (String d : dirs) out.add(Path.of(d));
        return out;
    }

    private static void addPathList(Set<String> dirs, String list) {
        if (list == null || list.isBlank()) return;
        for (String d : list.split(File.pathSeparator)) if (!d.isBlank()) dirs.add(d.trim());
    }

    /** A short description of the search, for "not found" messages. */
    static String describeSearch(List<String> names) {
        return String.join(" / ", names) + " (searched the dynamic linker path and " + searchDirectories() + "; set "
                + ENV + " to add directories)";
    }
}
