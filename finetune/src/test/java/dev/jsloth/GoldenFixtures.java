package dev.jsloth;

import java.net.URISyntaxException;
import java.net.URL;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * Where the Hugging Face golden cases come from ({@code ../shared/fixtures/hf} as the fixtures' README lays it out:
 * {@code gqa-untied}, {@code tied-odd}, {@code mha-bf16}, {@code tok-bytelevel}, {@code tok-spm}). In order: the
 * directory named by {@code -Djsloth.fixtures.hf=DIR} (or {@code JSLOTH_FIXTURES_HF}; relative to the project root);
 * else {@code ../shared/fixtures/hf} beside the project, or {@code shared/fixtures/hf} inside it (as a checkout copied
 * to the GPU machine carries it), where it holds the case with all its files; else the copy bundled in the test
 * resources ({@code /hf/NAME}, {@code /fixtures/tok-*}), so the suite runs on a clone alone. Each case's source is
 * printed once, so a run shows which goldens it checked. (Tests that only need a model to run on, not its goldens,
 * keep the bundled copy.)
 */
public final class GoldenFixtures {
    /** The files a model case needs; a tokenizer case needs tokenizer.json and cases.json. */
    private static final List<String> MODEL_FILES = List.of("config.json", "model.safetensors", "expected.json", "expected.safetensors",
            "adapter/adapter_config.json", "adapter/adapter_model.safetensors");
    private static final List<String> TOKENIZER_FILES = List.of("tokenizer.json", "cases.json");
    private static final Map<String, Path> RESOLVED = new ConcurrentHashMap<>();

    private GoldenFixtures() {
    }

    /** The directory of a model case ({@code gqa-untied}, {@code tied-odd}, {@code mha-bf16}). */
    public static Path model(String name) {
        return RESOLVED.computeIfAbsent(name, n -> resolve(n, MODEL_FILES, "/hf/" + n + "/config.json"));
    }

    /** The directory of a tokenizer case ({@code tok-bytelevel}, {@code tok-spm}). */
    public static Path tokenizer(String name) {
        return RESOLVED.computeIfAbsent(name, n -> resolve(n, TOKENIZER_FILES, "/fixtures/" + n + "/tokenizer.json"));
    }

    private static Path resolve(String name, List<String> files, String bundledFile) {
        String named = System.getProperty("jsloth.fixtures.hf", System.getenv("JSLOTH_FIXTURES_HF"));
        Path root = projectRoot();
        if (named != null && !named.isBlank()) {
            Path dir = (root == null ? Path.of(named) : root.resolve(named)).resolve(name);
            for (String f : files)
                if (!Files.isRegularFile(dir.resolve(f)))
                    throw new IllegalStateException("jsloth.fixtures.hf=" + named + ": case " + name + " lacks " + f + " (" + dir.resolve(f) + ")");
            return announce(name, dir, "jsloth.fixtures.hf");
        }
        if (root != null) {
            for (Path shared : List.of(root.resolveSibling("shared"), root.resolve("shared"))) {
                Path dir = shared.resolve("fixtures").resolve("hf").resolve(name);
                if (files.stream().allMatch(f -> Files.isRegularFile(dir.resolve(f)))) return announce(name, dir, "the shared fixtures");
            }
        }
        URL url = GoldenFixtures.class.getResource(bundledFile);
        if (url == null) throw new IllegalStateException("missing test resource " + bundledFile + " (and no shared fixture " + name + ")");
        try {
            return announce(name, Path.of(url.toURI()).getParent(), "the bundled copy");
        } catch (URISyntaxException e) {
            throw new IllegalStateException(e);
        }
    }

    /** The project root (the directory holding the {@code jsloth} launcher and pom.xml) above the working directory, or null. */
    private static Path projectRoot() {
        for (Path p = Path.of("").toAbsolutePath(); p != null; p = p.getParent())
            if (Files.isRegularFile(p.resolve("jsloth")) && Files.isRegularFile(p.resolve("pom.xml"))) return p;
        return null;
    }

    private static Path announce(String name, Path dir, String source) {
        System.out.println("[fixtures] " + name + " from " + source + ": " + dir);
        return dir;
    }
}
