package dev.jsloth.cuda;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * Compiled kernels on disk, so NVRTC runs once per source, option set and GPU architecture: one file
 * {@code <sha256>.cubin} (or {@code .ptx}) per program holding the image and the lowered kernel names. The key
 * hashes the compiler version, options, name expressions, headers and source. The directory is
 * {@code -Djsloth.cuda.cache}, else {@code $JSLOTH_CUDA_CACHE}, else {@code ~/.cache/jsloth/cuda}
 * ({@code $XDG_CACHE_HOME/jsloth/cuda}). Any I/O problem only disables caching.
 */
final class KernelCache {
    static final String PROPERTY = "jsloth.cuda.cache";
    static final String ENV = "JSLOTH_CUDA_CACHE";
    private static final int MAGIC = 0x4A534B31; // "JSK1"

    private final Path dir;

    KernelCache(Path dir) {
        this.dir = dir;
    }

    static Path defaultDirectory() {
        String d = System.getProperty(PROPERTY);
        if (d == null || d.isBlank()) d = System.getenv(ENV);
        if (d != null && !d.isBlank()) return Path.of(d);
        String xdg = System.getenv("XDG_CACHE_HOME");
        Path base = xdg != null && !xdg.isBlank() ? Path.of(xdg) : Path.of(System.getProperty("user.home"), ".cache");
        return base.resolve("jsloth").resolve("cuda");
    }

    /** The cache key of one compilation. */
    static String key(String compilerVersion, List<String> options, List<String> nameExpressions, Map<String, String> headers,
                      String source) {
        try {
            MessageDigest md = MessageDigest.getInstance("SHA-256");
            StringBuilder sb = new StringBuilder("nvrtc ").append(compilerVersion).append('\n');
            sb.append(String.join(" ", options)).append('\n').append(String.join(";", nameExpressions)).append('\n');
            for (Map.Entry<String, String> h : new java.util.TreeMap<>(headers).entrySet())
                sb.append(h.getKey()).append('\n').append(h.getValue()).append('\n');
            sb.append(source);
            return HexFormat.of().formatHex(md.digest(sb.toString().getBytes(StandardCharsets.UTF_8)));
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    private Path file(String key, boolean cubin) {
        return dir.resolve(key + (cubin ? ".cubin" : ".ptx"));
    }

    Optional<Nvrtc.Program> load(String key) {
        for (boolean cubin : new boolean[]{true, false}) {
            Path f = file(key, cubin);
            if (!Files.isRegularFile(f)) continue;
            try (DataInputStream in = new DataInputStream(new ByteArrayInputStream(Files.readAllBytes(f)))) {
                if (in.readInt() != MAGIC) continue;
                int names = in.readInt();
                Map<String, String> lowered = new LinkedHashMap<>();
                for (int i = 0; i < names; i++) lowered.put(in.readUTF(), in.readUTF());
                byte[] image = new byte[in.readInt()];
                in.readFully(image);
                return Optional.of(new Nvrtc.Program(image, cubin, lowered, "(from " + f + ")"));
            } catch (IOException | RuntimeException corrupt) {
                // recompile
            }
        }
        return Optional.empty();
    }

    void store(String key, Nvrtc.Program p) {
        try {
            Files.createDirectories(dir);
            ByteArrayOutputStream bytes = new ByteArrayOutputStream();
            try (DataOutputStream out = new DataOutputStream(bytes)) {
                out.writeInt(MAGIC);
                out.writeInt(p.loweredNames().size());
                for (Map.Entry<String, String> e : p.loweredNames().entrySet()) {
                    out.writeUTF(e.getKey());
                    out.writeUTF(e.getValue());
                }
                out.writeInt(p.image().length);
                out.write(p.image());
            }
            Path tmp = Files.createTempFile(dir, key, ".tmp");
            Files.write(tmp, bytes.toByteArray());
            Files.move(tmp, file(key, p.cubin()), StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
        } catch (IOException | RuntimeException e) {
            // caching is an optimisation only
        }
    }
}
