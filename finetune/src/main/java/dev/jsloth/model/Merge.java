package dev.jsloth.model;

import dev.jsloth.api.Backend;
import dev.jsloth.api.DType;
import dev.jsloth.api.Shape;
import dev.jsloth.api.Tensor;
import dev.jsloth.io.SafeTensorsCheckpoint;
import dev.jsloth.io.SafeTensorsWriter;
import dev.jsloth.io.TensorBytes;
import dev.jsloth.io.TensorEntry;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.stream.Stream;

/**
 * Folds a LoRA adapter into the base weights, {@code W' = W + s B A} computed in float64 and rounded once to the
 * weight's stored type, and writes a checkpoint transformers loads: {@code model.safetensors} plus every other
 * file of the base directory (config, tokenizer, generation config) copied.
 */
public final class Merge {
    private Merge() {
    }

    public static void merge(Path modelDir, Path adapterDir, Path outDir, Backend be) throws IOException {
        LlamaConfig cfg = LlamaConfig.read(modelDir);
        if (Files.exists(outDir) && Files.isSameFile(outDir, modelDir))
            throw new IllegalArgumentException("--out must differ from --model (the base would be overwritten)");
        Files.createDirectories(outDir);
        try (LoraAdapter adapter = LoraAdapter.load(adapterDir, cfg, be, DType.F64);
             SafeTensorsCheckpoint ck = SafeTensorsCheckpoint.open(modelDir);
             Arena arena = Arena.ofConfined()) {
            SafeTensorsWriter w = new SafeTensorsWriter().metadata("format", "pt");
            for (String name : ck.names()) {
                TensorEntry e = ck.entry(name);
                LoraAdapter.Pair pair = pairFor(adapter, cfg, name);
                if (pair == null) {
                    w.add(name, e.dtype(), e.shape(), ck.bytes(name));
                    continue;
                }
                DType stored = e.engineType();
                try (Tensor raw = be.uploadRaw(stored, Shape.of(e.intShape()), ck.bytes(name));
                     Tensor wide = be.allocate(DType.F64, Shape.of(e.intShape()))) {
                    be.kernels().copy(raw, wide);
                    be.kernels().gemm(false, false, pair.scaling(), pair.b().value(), pair.a().value(), 1.0, wide);
                    w.add(name, e.dtype(), e.shape(), TensorBytes.encode(e.dtype(), be.download(wide), arena));
                }
            }
            w.write(outDir.resolve(SafeTensorsCheckpoint.SINGLE));
        }
        try (Stream<Path> files = Files.list(modelDir)) {
            for (Path f : (Iterable<Path>) files::iterator) {
                String n = f.getFileName().toString();
                if (!Files.isRegularFile(f) || n.endsWith(".safetensors") || n.equals(SafeTensorsCheckpoint.INDEX)
                        || n.endsWith(".bin") || n.endsWith(".pt") || n.endsWith(".pth")) continue;
                Files.copy(f, outDir.resolve(n), StandardCopyOption.REPLACE_EXISTING);
            }
        }
    }

    private static LoraAdapter.Pair pairFor(LoraAdapter a, LlamaConfig cfg, String tensorName) {
        for (int l = 0; l < cfg.numLayers(); l++)
            for (Projection p : Projection.values())
                if (tensorName.equals(p.path(l) + ".weight")) return a.pair(l, p);
        return null;
    }
}
