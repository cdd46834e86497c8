package dev.jsloth.model;

import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.jsloth.api.quant.Nf4;
import dev.jsloth.api.quant.Nf4Weight;
import dev.jsloth.io.BnbNf4;
import dev.jsloth.io.Json;
import dev.jsloth.io.SafeTensorsCheckpoint;
import dev.jsloth.io.SafeTensorsWriter;
import dev.jsloth.io.TensorBytes;
import dev.jsloth.io.TensorEntry;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.HashMap;
import java.util.Map;
import java.util.stream.Stream;

/**
 * Writes a bitsandbytes-format 4-bit checkpoint: the seven projection weights of every layer in NF4 (with or
 * without double quantization), everything else as stored, and {@code quantization_config} in config.json, so
 * transformers loads it with bitsandbytes and jsloth loads it as QLoRA base weights.
 */
public final class Quantize {
    private Quantize() {
    }

    /** Result: how many weights were quantized and the bytes before/after. */
    public record Report(int quantized, long bytesBefore, long bytesAfter) {
    }

    public static Report quantize(Path modelDir, Path outDir, boolean doubleQuant) throws IOException {
        LlamaConfig cfg = LlamaConfig.read(modelDir);
        if (Files.exists(outDir) && Files.isSameFile(outDir, modelDir))
            throw new IllegalArgumentException("--out must differ from --model");
        Files.createDirectories(outDir);
        Map<String, int[]> projections = new HashMap<>();
        for (int l = 0; l < cfg.numLayers(); l++)
            for (Projection p : Projection.values()) projections.put(p.path(l) + ".weight", p.shape(cfg));
        int count = 0;
        long before = 0, after = 0;
        try (SafeTensorsCheckpoint ck = SafeTensorsCheckpoint.open(modelDir); Arena arena = Arena.ofConfined()) {
            SafeTensorsWriter w = new SafeTensorsWriter().metadata("format", "pt");
            for (String name : ck.names()) {
                TensorEntry e = ck.entry(name);
                before += e.byteLength();
                int[] shape = projections.get(name);
                if (shape == null || BnbNf4.isQuantized(ck, name)) {
                    w.add(name, e.dtype(), e.shape(), ck.bytes(name));
                    after += e.byteLength();
                    continue;
                }
                if (!e.hasShape(shape) || !e.isFloating())
                    throw new dev.jsloth.io.CheckpointFormatException(ck.file(name).path(), "tensor '" + name + "'", "is " + e
                            + "; quantizing needs a floating weight of the config's shape " + java.util.Arrays.toString(shape));
                Nf4Weight q = Nf4.quantize(TensorBytes.decodeFloats(e.dtype(), ck.bytes(name)), doubleQuant);
                BnbNf4.write(w, name, shape, q, torchName(e.dtype()), arena);
                after += q.packed().length + (doubleQuant ? q.absmaxCodes().length + 4L * q.nestedAbsmax().length : 4L * q.absmax().length);
                count++;
            }
            w.write(outDir.resolve(SafeTensorsCheckpoint.SINGLE));
        }
        ObjectNode config = (ObjectNode) Json.read(modelDir.resolve("config.json"));
        config.set("quantization_config", BnbNf4.quantizationConfig(doubleQuant, "bfloat16"));
        Json.write(outDir.resolve("config.json"), config);
        try (Stream<Path> files = Files.list(modelDir)) {
            for (Path f : (Iterable<Path>) files::iterator) {
                String n = f.getFileName().toString();
                if (!Files.isRegularFile(f) || n.equals("config.json") || n.endsWith(".safetensors") || n.equals(SafeTensorsCheckpoint.INDEX)
                        || n.endsWith(".bin") || n.endsWith(".pt") || n.endsWith(".pth")) continue;
                Files.copy(f, outDir.resolve(n), StandardCopyOption.REPLACE_EXISTING);
            }
        }
        return new Report(count, before, after);
    }

    private static String torchName(String dtype) {
        return switch (dtype) {
            case "BF16" -> "bfloat16";
            case "F16" -> "float16";
            case "F64" -> "float64";
            default -> "float32";
        };
    }
}
