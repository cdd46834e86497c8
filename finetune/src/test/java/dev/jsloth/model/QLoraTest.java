package dev.jsloth.model;

import com.fasterxml.jackson.databind.JsonNode;
import dev.jsloth.api.Backend;
import dev.jsloth.api.DType;
import dev.jsloth.api.quant.Nf4;
import dev.jsloth.api.spi.Backends;
import dev.jsloth.io.Json;
import dev.jsloth.io.SafeTensorsFile;
import dev.jsloth.io.TensorBytes;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** QLoRA: NF4 base weights on the fixtures, the bitsandbytes export round trip, and an independent decoder. */
class QLoraTest {
    static Backend be;

    @BeforeAll
    static void start() {
        be = Backends.create("cpu");
    }

    @AfterAll
    static void stop() {
        be.close();
    }

    @Test
    void nf4LossStaysWithinQuantizationErrorOfFullPrecision() throws Exception {
        for (String name : Fixture.CASES) {
            try (Fixture fx = Fixture.open(name);
                 LlamaModel full = LlamaModel.load(fx.dir(), be, DType.F32);
                 LlamaModel q = LlamaModel.load(fx.dir(), be, DType.F32, LlamaWeights.Quantization.NF4_DOUBLE)) {
                Batch b = Batch.of(fx.ints("input_ids"), fx.ints("labels"));
                try (LoraAdapter a1 = full.loadAdapter(fx.dir().resolve("adapter")); LoraAdapter a2 = q.loadAdapter(fx.dir().resolve("adapter"))) {
                    double lf = full.loss(b).meanLoss(), lq = q.loss(b).meanLoss();
                    double rel = Math.abs(lq - lf) / lf;
                    System.out.printf("[qlora] %s LoRA loss f32 %.6f, NF4 %.6f, relative difference %.2e; weights %d -> %d bytes%n",
                            name, lf, lq, rel, full.weights().backendBytes(), q.weights().backendBytes());
                    // 4-bit weights (~7% relative weight error, random) move a random tiny model's loss by well under 1%
                    assertTrue(rel < 1e-2, name + ": " + rel);
                    assertTrue(q.weights().backendBytes() < full.weights().backendBytes() / 2);
                }
            }
        }
    }

    @Test
    void bitsandbytesExportRoundTripsAndDecodesIndependently(@TempDir Path tmp) throws Exception {
        for (boolean dq : new boolean[]{true, false}) {
            Path out = tmp.resolve("q" + dq);
            try (Fixture fx = Fixture.open("gqa-untied")) {
                Quantize.quantize(fx.dir(), out, dq);
                JsonNode qc = Json.read(out.resolve("config.json")).get("quantization_config");
                assertEquals("bitsandbytes", qc.get("quant_method").asText());
                assertEquals(dq, qc.get("bnb_4bit_use_double_quant").asBoolean());
                Batch b = Batch.of(fx.ints("input_ids"), fx.ints("labels"));
                try (LlamaModel onTheFly = LlamaModel.load(fx.dir(), be, DType.F64, dq ? LlamaWeights.Quantization.NF4_DOUBLE : LlamaWeights.Quantization.NF4);
                     LlamaModel reloaded = LlamaModel.load(out, be, DType.F64)) {
                    assertTrue(reloaded.weights().hasNf4());
                    assertEquals(onTheFly.loss(b).lossSum(), reloaded.loss(b).lossSum(), 0.0);
                }
                // an independent decoder written from the format description, not using the engine's readers
                String w = "model.layers.1.mlp.down_proj.weight";
                try (SafeTensorsFile f = SafeTensorsFile.open(out.resolve("model.safetensors"));
                     SafeTensorsFile orig = SafeTensorsFile.open(fx.dir().resolve("model.safetensors"))) {
                    JsonNode st = Json.MAPPER.readTree(new String(f.bytes(w + ".quant_state.bitsandbytes__nf4").toArray(ValueLayout.JAVA_BYTE), StandardCharsets.UTF_8));
                    int rows = st.get("shape").get(0).asInt(), cols = st.get("shape").get(1).asInt();
                    byte[] packed = f.bytes(w).toArray(ValueLayout.JAVA_BYTE);
                    var le = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
                    float[] code = f.bytes(w + ".quant_map").toArray(le);
                    float[] absmax;
                    if (dq) {
                        byte[] a = f.bytes(w + ".absmax").toArray(ValueLayout.JAVA_BYTE);
                        float[] nested = f.bytes(w + ".nested_absmax").toArray(le), map = f.bytes(w + ".nested_quant_map").toArray(le);
                        float offset = (float) st.get("nested_offset").asDouble();
                        absmax = new float[a.length];
                        for (int i = 0; i < a.length; i++) absmax[i] = map[a[i] & 0xFF] * nested[i / 256] + offset;
                    } else {
                        absmax = f.bytes(w + ".absmax").toArray(le);
                    }
                    float[] ref = TensorBytes.decodeFloats("F32", orig.bytes(w));
                    double worst = 0;
                    for (int i = 0; i < rows * cols; i++) {
                        int q = (i % 2 == 0) ? (packed[i / 2] & 0xFF) >>> 4 : packed[i / 2] & 0xF;
                        float v = code[q] * absmax[i / 64];
                        float blockMax = 0;
                        for (int j = (i / 64) * 64; j < (i / 64) * 64 + 64; j++) blockMax = Math.max(blockMax, Math.abs(ref[j]));
                        worst = Math.max(worst, Math.abs(v - ref[i]) / blockMax);
                    }
                    System.out.printf("[qlora] independent decode (double quant %b): worst |w - dequant| / block absmax = %.4f%n", dq, worst);
                    // half the widest NF4 code gap (between -1 and -0.696) plus the scale's 8-bit error
                    assertTrue(worst <= (1 - 0.6961928009986877) / 2 + (dq ? 0.01 : 1e-6), "worst " + worst);
                    assertEquals(Nf4.CODE[15], code[15]);
                }
            }
        }
    }

    /**
     * Merging into a 4-bit base (PEFT's merge_and_unload on a QLoRA model): the weights come out dequantized and merged,
     * in the type the quant state names, with the quantization tensors and quantization_config gone; the merged model
     * without the adapter gives the loss the 4-bit model gives with it.
     */
    @Test
    void mergeIntoAFourBitBaseWritesDequantizedMergedWeights(@TempDir Path tmp) throws Exception {
        try (Fixture fx = Fixture.open("gqa-untied")) {
            Path q = tmp.resolve("q"), merged = tmp.resolve("merged");
            Quantize.quantize(fx.dir(), q, true);
            Merge.merge(q, fx.dir().resolve("adapter"), merged, be);
            assertTrue(Json.read(merged.resolve("config.json")).get("quantization_config") == null);
            try (SafeTensorsFile f = SafeTensorsFile.open(merged.resolve("model.safetensors"))) {
                for (String n : f.names()) assertTrue(!n.contains("absmax") && !n.contains("quant_"), n);
                assertEquals("F32", f.entry("model.layers.0.self_attn.q_proj.weight").dtype()); // the fixture's weights are F32
            }
            Batch b = Batch.of(fx.ints("input_ids"), fx.ints("labels"));
            try (LlamaModel fourBit = LlamaModel.load(q, be, DType.F64); LlamaModel dense = LlamaModel.load(merged, be, DType.F64);
                 LoraAdapter a = fourBit.loadAdapter(fx.dir().resolve("adapter"))) {
                assertTrue(fourBit.weights().hasNf4() && !dense.weights().hasNf4());
                double withAdapter = fourBit.loss(b).meanLoss(), mergedLoss = dense.loss(b).meanLoss();
                System.out.printf("[qlora] 4-bit base + adapter %.9f, merged dense %.9f%n", withAdapter, mergedLoss);
                assertEquals(withAdapter, mergedLoss, 1e-5 * withAdapter); // one rounding of the merged weights to F32
            }
        }
    }

    /** A quant state's fields are read exactly: no string or fractional block size, no shape past int, no infinite offset; FP4 named. */
    @Test
    void malformedQuantStatesAreNamedErrors(@TempDir Path tmp) throws Exception {
        try (Fixture fx = Fixture.open("gqa-untied")) {
            Path q = tmp.resolve("q");
            Quantize.quantize(fx.dir(), q, true);
            String w = "model.layers.0.mlp.up_proj.weight", state = w + ".quant_state.bitsandbytes__nf4";
            JsonNode good;
            try (SafeTensorsFile f = SafeTensorsFile.open(q.resolve("model.safetensors"))) {
                good = Json.MAPPER.readTree(new String(f.bytes(state).toArray(ValueLayout.JAVA_BYTE), StandardCharsets.UTF_8));
            }
            String[][] cases = {
                    {"blocksize", "\"64\"", "blocksize"},
                    {"blocksize", "64.5", "blocksize"},
                    {"nested_offset", "1e300", "nested_offset"},
                    {"shape", "[4294967456, 64]", "shape"},
            };
            for (int i = 0; i < cases.length; i++) {
                String[] c = cases[i];
                com.fasterxml.jackson.databind.node.ObjectNode bad = good.deepCopy();
                bad.set(c[0], Json.MAPPER.readTree(c[1]));
                Path dir = withTensor(q, tmp.resolve("bad-" + i), state, state, Json.MAPPER.writeValueAsBytes(bad));
                var e = org.junit.jupiter.api.Assertions.assertThrows(dev.jsloth.io.CheckpointFormatException.class, () -> LlamaModel.load(dir, be, DType.F32).close());
                assertTrue(e.getMessage().contains(c[2]) && e.getMessage().contains("model.safetensors"), c[0] + " = " + c[1] + ": " + e.getMessage());
            }
            Path fp4 = withTensor(q, tmp.resolve("fp4"), state, w + ".quant_state.bitsandbytes__fp4", Json.MAPPER.writeValueAsBytes(good));
            var e = org.junit.jupiter.api.Assertions.assertThrows(dev.jsloth.io.CheckpointFormatException.class, () -> LlamaModel.load(fp4, be, DType.F32).close());
            assertTrue(e.getMessage().contains("FP4") && e.getMessage().contains(w), e.getMessage());
        }
    }

    /** A projection weight stored as integers (of the right shape) is named as such, when loading it as NF4 and when quantizing. */
    @Test
    void nonFloatingProjectionWeightsAreNamed(@TempDir Path tmp) throws Exception {
        try (Fixture fx = Fixture.open("gqa-untied")) {
            String w = "model.layers.1.self_attn.o_proj.weight";
            long[] shape;
            try (SafeTensorsFile f = SafeTensorsFile.open(fx.dir().resolve("model.safetensors"))) {
                shape = f.entry(w).shape();
            }
            Path bad = withTensor(fx.dir(), tmp.resolve("i32"), w, w, "I32", shape, new byte[Math.toIntExact(4 * shape[0] * shape[1])]);
            var e = org.junit.jupiter.api.Assertions.assertThrows(dev.jsloth.io.CheckpointFormatException.class,
                    () -> LlamaModel.load(bad, be, DType.F32, LlamaWeights.Quantization.NF4).close());
            assertTrue(e.getMessage().contains(w) && e.getMessage().contains("I32"), e.getMessage());
            var q = org.junit.jupiter.api.Assertions.assertThrows(dev.jsloth.io.CheckpointFormatException.class,
                    () -> Quantize.quantize(bad, tmp.resolve("out"), true));
            assertTrue(q.getMessage().contains(w) && q.getMessage().contains("floating"), q.getMessage());
        }
    }

    /** A copy of checkpoint {@code src} whose tensor {@code name} is replaced by U8 {@code bytes} named {@code newName}. */
    private static Path withTensor(Path src, Path dst, String name, String newName, byte[] bytes) throws Exception {
        return withTensor(src, dst, name, newName, "U8", new long[]{bytes.length}, bytes);
    }

    private static Path withTensor(Path src, Path dst, String name, String newName, String dtype, long[] shape, byte[] bytes) throws Exception {
        java.nio.file.Files.createDirectories(dst);
        for (String file : new String[]{"config.json"}) java.nio.file.Files.copy(src.resolve(file), dst.resolve(file));
        try (SafeTensorsFile f = SafeTensorsFile.open(src.resolve("model.safetensors")); java.lang.foreign.Arena arena = java.lang.foreign.Arena.ofConfined()) {
            dev.jsloth.io.SafeTensorsWriter out = new dev.jsloth.io.SafeTensorsWriter();
            for (String n : f.names()) {
                if (n.equals(name)) out.add(newName, dtype, shape, arena.allocateFrom(ValueLayout.JAVA_BYTE, bytes));
                else out.add(n, f.entry(n).dtype(), f.entry(n).shape(), f.bytes(n));
            }
            out.write(dst.resolve("model.safetensors"));
        }
        return dst;
    }
}
