package dev.jsloth.cuda;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/** The CUDA C++ sources shipped as resources beside this class ({@code dev/jsloth/cuda/*.cu} and the header). */
final class KernelSources {
    private static final Map<String, String> TEXTS = new ConcurrentHashMap<>();

    private KernelSources() {
    }

    /** The text of one resource, e.g. {@code attention.cu}. */
    static String read(String file) {
        return TEXTS.computeIfAbsent(file, f -> {
            try (InputStream in = KernelSources.class.getResourceAsStream(f)) {
                if (in == null) throw new IllegalStateException("CUDA source " + f + " is not on the class path");
                return new String(in.readAllBytes(), StandardCharsets.UTF_8);
            } catch (IOException e) {
                throw new UncheckedIOException("reading CUDA source " + f, e);
            }
        });
    }

    /** The headers a source may include, by include name. */
    static Map<String, String> headers() {
        return Map.of(KernelId.COMMON_HEADER, read(KernelId.COMMON_HEADER));
    }
}
