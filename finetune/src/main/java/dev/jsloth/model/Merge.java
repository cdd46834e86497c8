package dev.jsloth.model;

import dev.jsloth.api.Backend;
import dev.jsloth.api.DType;
import dev.jsloth.api.Shape;
import dev.jsloth.api.Tensor;
import dev.jsloth.api.quant.Nf4;
import dev.jsloth.api.quant.Nf4Weight;
import dev.jsloth.io.AtomicFiles;
import dev.jsloth.io.BnbNf4;
import dev.jsloth.io.CheckpointFormatException;
import dev.jsloth.io.Json;
import dev.jsloth.io.SafeTensorsCheckpoint;
import dev.jsloth.io.SafeTensorsWriter;
import dev.jsloth.io.TensorBytes;
import dev.jsloth.io.TensorEntry;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.stream.Stream;

/**
 * Folds a LoRA adapter into the base weights, {@code W' = W + s B A} computed in float64 and rounded once to the
 * weight's stored type, and writes a checkpoint transformers loads: {@code model.safetensors} plus every other
 * file of the base directory (config, tokenizer, generation config) copied. A QLoRA base (bitsandbytes NF4 weights, as
 * {@code jsloth quantize} or transformers write them) is merged as PEFT's {@code merge_and_unload} does it: every 4-bit
 * weight is dequantized, merged where the adapter has a pair for it, and written in the type its quant state names;
 * the quantization tensors and {@code config.json}'s {@code quantization_config} are left out.
 */
public final class Merge {
    private Merge() {
    }

    public static void merge(Path modelDir, Path adapterDir, Path outDir, Backend be) throws IOException {
        LlamaConfig cfg = LlamaConfig.read(modelDir);
        boolean dequantized;
        if (Files.exists(outDir) && Files.isSameFile(outDir, modelDir))
            throw new IllegalArgumentException("--out must differ from --model (the base would be overwritten)");
        Files.createDirectories(outDir);
        try (LoraAdapter adapter = LoraAdapter.load(adapterDir, cfg, be, DType.F64);
             SafeTensorsCheckpoint ck = SafeTensorsCheckpoint.open(modelDir);
             Arena arena = Arena.ofConfined()) {
            SafeTensorsWriter w = new SafeTensorsWriter().metadata("format", "pt");
            java.util.Set<String> quantization = quantizationTensors(ck);
            dequantized = !quantization.isEmpty();
            for (String name : ck.names()) {
                if (quantization.contains(name)) continue;
                TensorEntry e = ck.entry(name);
                Site site = projectionOf(cfg, name);
                LoraAdapter.Pair pair = site == null ? null : adapter.pair(site.layer(), site.projection());
                if (BnbNf4.isQuantized(ck, name)) {
                    if (site == null)
                        throw new CheckpointFormatException(ck.file(name).path(), "tensor '" + name + "'", "is 4-bit but not a projection weight");
                    int[] shape = site.projection().shape(cfg);
                    BnbNf4.Loaded q = BnbNf4.read(ck, name, shape);
                    String dtype = storedType(ck, name, q.dtype());
                    float[] dense = Nf4Weight.dequantize(q.packed().toArray(ValueLayout.JAVA_BYTE), q.scales().values(), (long) shape[0] * shape[1], Nf4.CODE);
                    double[] merged = new double[dense.length];
                    for (int i = 0; i < dense.length; i++) merged[i] = dense[i];
                    if (pair != null) {
                        try (Tensor wide = be.upload(DType.F64, Shape.of(shape), merged)) {
                            merged = foldIn(be, pair, wide);
                        }
                    }
                    w.add(name, dtype, new long[]{shape[0], shape[1]}, TensorBytes.encode(dtype, merged, arena));
                    continue;
                }
                if (pair == null) {
                    w.add(name, e.dtype(), e.shape(), ck.bytes(name));
                    continue;
                }
                DType stored = e.engineType();
                int[] expected = site.projection().shape(cfg);
                if (!e.isFloating() || !e.hasShape(expected))
                    throw new CheckpointFormatException(ck.file(name).path(), "tensor '" + name + "'", "is " + e + "; merging needs a floating"
                            + " weight of shape " + java.util.Arrays.toString(expected) + " (the config's)");
                try (Tensor raw = be.uploadRaw(stored, Shape.of(e.intShape()), ck.bytes(name));
                     Tensor wide = be.allocate(DType.F64, Shape.of(e.intShape()))) {
                    be.kernels().copy(raw, wide);
                    w.add(name, e.dtype(), e.shape(), TensorBytes.encode(e.dtype(), foldIn(be, pair, wide), arena));
                }
            }
            w.write(outDir.resolve(SafeTensorsCheckpoint.SINGLE));
        }
        try (Stream<Path> files = Files.list(modelDir)) {
            for (Path f : (Iterable<Path>) files::iterator) {
                String n = f.getFileName().toString();
                if (!Files.isRegularFile(f) || n.endsWith(".safetensors") || n.equals(SafeTensorsCheckpoint.INDEX)
                        || n.endsWith(".bin") || n.endsWith(".pt") || n.endsWith(".pth")) continue;
                if (dequantized && n.equals("config.json")) { // the weights are no longer 4-bit
                    com.fasterxml.jackson.databind.node.ObjectNode config = (com.fasterxml.jackson.databind.node.ObjectNode) Json.read(f);
                    config.remove("quantization_config");
                    Json.write(outDir.resolve(n), config);
                    continue;
                }
                AtomicFiles.write(outDir.resolve(n), ch -> { // streamed: another file may be large
                    try (java.nio.channels.FileChannel in = java.nio.channels.FileChannel.open(f)) {
                        for (long at = 0, size = in.size(); at < size; ) at += in.transferTo(at, size - at, ch);
                    }
                });
            }
        }
    }

    /** The bitsandbytes tensors that hold 4-bit weights' quantization (block scales, code tables, quant states). */
    private static java.util.Set<String> quantizationTensors(SafeTensorsCheckpoint ck) {
        java.util.Set<String> out = new java.util.HashSet<>();
        for (String name : ck.names()) {
            if (!name.endsWith(BnbNf4.STATE_SUFFIX)) continue;
            String w = name.substring(0, name.length() - BnbNf4.STATE_SUFFIX.length());
            for (String part : new String[]{".absmax", ".quant_map", ".nested_absmax", ".nested_quant_map", BnbNf4.STATE_SUFFIX})
                if (ck.contains(w + part)) out.add(w + part);
        }
        return out;
    }

    /** The safetensors type of a dequantized weight: the one its quant state names (bfloat16, float16, float32). */
    private static String storedType(SafeTensorsCheckpoint ck, String name, String quantStateDtype) throws IOException {
        String t = quantStateDtype.startsWith("torch.") ? quantStateDtype.substring("torch.".length()) : quantStateDtype;
        return switch (t) {
            case "bfloat16" -> "BF16";
            case "float16" -> "F16";
            case "float32" -> "F32";
            default -> throw new CheckpointFormatException(ck.file(name + BnbNf4.STATE_SUFFIX).path(), name + BnbNf4.STATE_SUFFIX + ".dtype",
                    "'" + quantStateDtype + "' is not bfloat16, float16 or float32");
        };
    }

    /** A projection weight's place: its layer and which projection. */
    private record Site(int layer, Projection projection) {
    }

    /** The projection weight {@code tensorName} names, or null for any other tensor. */
    private static Site projectionOf(LlamaConfig cfg, String tensorName) {
        for (int l = 0; l < cfg.numLayers(); l++)
            for (Projection p : Projection.values())
                if (tensorName.equals(p.path(l) + ".weight")) return new Site(l, p);
        return null;
    }

    /** {@code W + s B A} in float64: the F64 weight {@code wide} updated in place, and its values. */
    private static double[] foldIn(Backend be, LoraAdapter.Pair pair, Tensor wide) {
        be.kernels().gemm(false, false, pair.scaling(), pair.b().value(), pair.a().value(), 1.0, wide);
        return be.download(wide);
    }
}
