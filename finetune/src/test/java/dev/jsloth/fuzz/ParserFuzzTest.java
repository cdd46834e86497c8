package dev.jsloth.fuzz;

import com.fasterxml.jackson.databind.JsonNode;
import dev.jsloth.api.Backend;
import dev.jsloth.api.DType;
import dev.jsloth.api.quant.Nf4;
import dev.jsloth.api.spi.Backends;
import dev.jsloth.data.BadRowPolicy;
import dev.jsloth.data.DatasetFormat;
import dev.jsloth.data.DatasetLoader;
import dev.jsloth.io.BnbNf4;
import dev.jsloth.io.SafeTensorsCheckpoint;
import dev.jsloth.io.SafeTensorsFile;
import dev.jsloth.io.SafeTensorsWriter;
import dev.jsloth.io.TensorBytes;
import dev.jsloth.model.LlamaConfig;
import dev.jsloth.model.LoraAdapter;
import dev.jsloth.tokenizer.Tokenizer;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Locale;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;

/**
 * Fuzzes every parser with seeded structural mutations of valid inputs ({@value #DEFAULT_ITERATIONS} per parser in
 * the suite; {@code -Djsloth.fuzz.iterations=N} for a longer local run). Each input must give a correct result or a
 * typed, descriptive {@link IOException} — never an unchecked exception, an Error, a JVM crash or a hang. A failure
 * names the parser, iteration and seed, and writes the input under {@code target/fuzz-crashers/} to be kept as a
 * regression case.
 */
class ParserFuzzTest {
    static final int DEFAULT_ITERATIONS = 10_000;
    static final int ITERATIONS = Integer.getInteger("jsloth.fuzz.iterations", DEFAULT_ITERATIONS);
    static Backend be;

    @BeforeAll
    static void start() {
        be = Backends.create("cpu");
    }

    @AfterAll
    static void stop() {
        be.close();
    }

    interface Target {
        void run(int iteration, SplittableRandom r) throws Exception;
    }

    static void fuzz(String parser, Target t) {
        assertTimeoutPreemptively(Duration.ofMinutes(4), () -> {
            int typed = 0;
            for (int i = 0; i < ITERATIONS; i++) {
                SplittableRandom r = new SplittableRandom(parser.hashCode() * 1_000_003L + i);
                try {
                    t.run(i, r);
                } catch (IOException expected) {
                    typed++;
                    if (expected.getMessage() == null || expected.getMessage().isBlank())
                        throw new AssertionError(parser + " iteration " + i + ": typed error without a message", expected);
                } catch (Throwable bad) {
                    throw new AssertionError(parser + " iteration " + i + " (seed " + (parser.hashCode() * 1_000_003L + i)
                            + "): " + bad.getClass().getName() + " instead of a typed error", bad);
                }
            }
            System.out.printf(Locale.ROOT, "[fuzz] %-22s %,d inputs, %,d rejected with a typed error, %,d accepted%n", parser, ITERATIONS, typed, ITERATIONS - typed);
        });
    }

    static void keep(Path dir, String parser, int i, byte[] input) {
        try {
            Path d = Path.of("target", "fuzz-crashers");
            Files.createDirectories(d);
            Files.write(d.resolve(parser + "-" + i + ".bin"), input);
        } catch (IOException ignored) {
            // best effort
        }
    }

    static byte[] validSafetensors() throws IOException {
        try (Arena a = Arena.ofConfined()) {
            Path tmp = Files.createTempFile("fuzz", ".safetensors");
            new SafeTensorsWriter().metadata("format", "pt")
                    .add("a", "F32", new int[]{2, 3}, TensorBytes.encode("F32", new double[]{1, 2, 3, 4, 5, 6}, a))
                    .add("b", "BF16", new int[]{4}, TensorBytes.encode("BF16", new double[]{1, 2, 3, 4}, a))
                    .add("c", "F64", new int[]{1}, TensorBytes.encode("F64", new double[]{7}, a))
                    .write(tmp);
            byte[] b = Files.readAllBytes(tmp);
            Files.delete(tmp);
            return b;
        }
    }

    /** Re-frames a mutated header with a correct length prefix (so the mutation reaches the validator). */
    static byte[] withHeader(byte[] original, JsonNode header) throws IOException {
        long len = ByteBuffer.wrap(original, 0, 8).order(ByteOrder.LITTLE_ENDIAN).getLong();
        byte[] data = java.util.Arrays.copyOfRange(original, (int) (8 + len), original.length);
        byte[] h = Mutator.JSON.writeValueAsBytes(header);
        ByteBuffer out = ByteBuffer.allocate(8 + h.length + data.length).order(ByteOrder.LITTLE_ENDIAN);
        out.putLong(h.length).put(h).put(data);
        return out.array();
    }

    static JsonNode header(byte[] file) throws IOException {
        long len = ByteBuffer.wrap(file, 0, 8).order(ByteOrder.LITTLE_ENDIAN).getLong();
        return Mutator.JSON.readTree(new String(file, 8, (int) len, StandardCharsets.UTF_8));
    }

    static byte[] mutateSafetensors(byte[] valid, SplittableRandom r) throws IOException {
        return r.nextInt(3) == 0 ? Mutator.damage(valid, r) : withHeader(valid, Mutator.mutate(header(valid), r));
    }

    @Test
    void safetensors(@TempDir Path dir) throws Exception {
        byte[] valid = validSafetensors();
        Path f = dir.resolve("m.safetensors");
        fuzz("safetensors", (i, r) -> {
            byte[] input = mutateSafetensors(valid, r);
            Files.write(f, input);
            try (SafeTensorsFile st = SafeTensorsFile.open(f)) {
                long sum = 0;
                for (String n : st.names()) {
                    st.entry(n);
                    for (byte b : st.bytes(n).toArray(java.lang.foreign.ValueLayout.JAVA_BYTE)) sum += b;
                }
                if (sum == Long.MIN_VALUE) throw new AssertionError("unreachable");
            } catch (IOException e) {
                throw e;
            } catch (Throwable t) {
                keep(dir, "safetensors", i, input);
                throw t;
            }
        });
    }

    @Test
    void configJson() throws Exception {
        Path cfg = Path.of(ParserFuzzTest.class.getResource("/hf/tied-odd/config.json").toURI());
        JsonNode valid = Mutator.JSON.readTree(cfg.toFile());
        fuzz("config.json", (i, r) -> LlamaConfig.parse(Path.of("config.json"), Mutator.mutate(valid, r)));
    }

    @Test
    void tokenizerJson(@TempDir Path dir) throws Exception {
        Path src = Path.of(ParserFuzzTest.class.getResource("/fixtures/byte-tokenizer.json").toURI());
        JsonNode valid = Mutator.JSON.readTree(src.toFile());
        byte[] validBytes = Files.readAllBytes(src);
        Path f = dir.resolve("tokenizer.json");
        fuzz("tokenizer.json", (i, r) -> {
            byte[] input = r.nextInt(4) == 0 ? Mutator.damage(validBytes, r) : Mutator.JSON.writeValueAsBytes(Mutator.mutate(valid, r));
            Files.write(f, input);
            Tokenizer t = Tokenizer.load(f);
            t.decode(t.encode("Hello <s> wörld 🦥 12345", true), false);
        });
    }

    @Test
    void adapter(@TempDir Path dir) throws Exception {
        Path fixture = Path.of(ParserFuzzTest.class.getResource("/hf/gqa-untied/config.json").toURI()).getParent();
        LlamaConfig cfg = LlamaConfig.read(fixture);
        JsonNode validCfg = Mutator.JSON.readTree(fixture.resolve("adapter/adapter_config.json").toFile());
        byte[] validWeights = Files.readAllBytes(fixture.resolve("adapter/adapter_model.safetensors"));
        fuzz("adapter", (i, r) -> {
            boolean weights = r.nextBoolean();
            Files.write(dir.resolve(LoraAdapter.CONFIG_FILE), Mutator.JSON.writeValueAsBytes(weights ? validCfg : Mutator.mutate(validCfg, r)));
            Files.write(dir.resolve(LoraAdapter.WEIGHTS_FILE), weights ? mutateSafetensors(validWeights, r) : validWeights);
            try (LoraAdapter a = LoraAdapter.load(dir, cfg, be, DType.F32)) {
                a.parameterCount();
            }
        });
    }

    @Test
    void datasets(@TempDir Path dir) throws Exception {
        String[] rows = {
                "{\"instruction\": \"Say hi\", \"input\": \"\", \"output\": \"hi\"}",
                "{\"messages\": [{\"role\": \"user\", \"content\": \"Q\"}, {\"role\": \"assistant\", \"content\": \"A\"}]}",
                "{\"text\": \"plain text row\"}"};
        Path f = dir.resolve("data.jsonl");
        fuzz("dataset", (i, r) -> {
            StringBuilder sb = new StringBuilder();
            int n = 1 + r.nextInt(6);
            String base = rows[r.nextInt(rows.length)];
            for (int k = 0; k < n; k++) {
                String line = r.nextInt(3) == 0 ? base : Mutator.JSON.writeValueAsString(Mutator.mutate(Mutator.JSON.readTree(base), r));
                sb.append(line).append('\n');
            }
            byte[] bytes = sb.toString().getBytes(StandardCharsets.UTF_8);
            if (r.nextInt(4) == 0) bytes = Mutator.damage(bytes, r);
            Files.write(f, bytes);
            DatasetLoader.load(f, DatasetFormat.AUTO, r.nextBoolean() ? BadRowPolicy.SKIP : BadRowPolicy.FAIL);
        });
    }

    @Test
    void bitsandbytes4bit(@TempDir Path dir) throws Exception {
        float[] w = new float[8 * 64];
        SplittableRandom g = new SplittableRandom(1);
        for (int i = 0; i < w.length; i++) w[i] = (float) g.nextGaussian();
        byte[] valid;
        try (Arena a = Arena.ofConfined()) {
            SafeTensorsWriter out = new SafeTensorsWriter();
            BnbNf4.write(out, "w.weight", new int[]{8, 64}, Nf4.quantize(w, true), "float32", a);
            Path tmp = dir.resolve("valid.safetensors");
            out.write(tmp);
            valid = Files.readAllBytes(tmp);
        }
        Path f = dir.resolve("model.safetensors");
        fuzz("bitsandbytes-nf4", (i, r) -> {
            byte[] input;
            if (r.nextInt(3) == 0) {
                // mutate the JSON quant state inside the U8 tensor, keeping the container valid
                input = mutateQuantState(valid, r);
            } else {
                input = mutateSafetensors(valid, r);
            }
            Files.write(f, input);
            try (SafeTensorsCheckpoint ck = SafeTensorsCheckpoint.of(java.util.List.of(f))) {
                if (BnbNf4.isQuantized(ck, "w.weight")) BnbNf4.read(ck, "w.weight", new int[]{8, 64});
            }
        });
    }

    static byte[] mutateQuantState(byte[] valid, SplittableRandom r) throws IOException {
        Path tmp = Files.createTempFile("q", ".safetensors");
        try {
            Files.write(tmp, valid);
            try (SafeTensorsFile f = SafeTensorsFile.open(tmp); Arena a = Arena.ofConfined()) {
                SafeTensorsWriter w = new SafeTensorsWriter();
                for (String n : f.names()) {
                    var e = f.entry(n);
                    if (n.endsWith(BnbNf4.STATE_SUFFIX)) {
                        JsonNode st = Mutator.JSON.readTree(new String(f.bytes(n).toArray(java.lang.foreign.ValueLayout.JAVA_BYTE), StandardCharsets.UTF_8));
                        byte[] j = Mutator.JSON.writeValueAsBytes(Mutator.mutate(st, r));
                        w.add(n, "U8", new long[]{j.length}, a.allocateFrom(java.lang.foreign.ValueLayout.JAVA_BYTE, j));
                    } else {
                        w.add(n, e.dtype(), e.shape(), f.bytes(n));
                    }
                }
                Path out = Files.createTempFile("q2", ".safetensors");
                w.write(out);
                byte[] b = Files.readAllBytes(out);
                Files.delete(out);
                return b;
            }
        } finally {
            Files.deleteIfExists(tmp);
        }
    }

}
