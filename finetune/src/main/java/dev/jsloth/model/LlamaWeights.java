package dev.jsloth.model;

import dev.jsloth.api.Backend;
import dev.jsloth.api.DType;
import dev.jsloth.api.Tensor;
import dev.jsloth.api.quant.Nf4;
import dev.jsloth.api.quant.Nf4Weight;
import dev.jsloth.io.BnbNf4;
import dev.jsloth.io.CheckpointFormatException;
import dev.jsloth.io.SafeTensorsCheckpoint;
import dev.jsloth.io.TensorBytes;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;

/**
 * The frozen base weights of a Llama checkpoint on a backend, kept in their stored type (kernels widen BF16/F16
 * exactly) unless a storage type is forced. Names follow Hugging Face: {@code model.embed_tokens.weight},
 * {@code model.layers.N.{input_layernorm, post_attention_layernorm}.weight}, the seven projections,
 * {@code model.norm.weight}, {@code lm_head.weight} (absent when tied).
 */
public final class LlamaWeights implements AutoCloseable {
    /** One decoder layer's tensors. */
    public record Layer(Tensor inputNorm, Tensor postNorm, Map<Projection, Tensor> weights, Map<Projection, Tensor> biases) {
    }

    private final Tensor embedding;
    private final Tensor finalNorm;
    private final Tensor lmHead; // == embedding when tied
    private final List<Layer> layers;
    private final List<Tensor> owned = new ArrayList<>();

    private LlamaWeights(Tensor embedding, Tensor finalNorm, Tensor lmHead, List<Layer> layers) {
        this.embedding = embedding;
        this.finalNorm = finalNorm;
        this.lmHead = lmHead;
        this.layers = layers;
    }

    /** Loads every tensor the config needs; {@code storage} null keeps each tensor's stored type. */
    public static LlamaWeights load(Path dir, LlamaConfig c, Backend be, DType storage) throws IOException {
        return load(dir, c, be, storage, Quantization.NONE);
    }

    /** How projection weights are held: as stored, or NF4 (quantized at load, with or without double quantization). */
    public enum Quantization { NONE, NF4, NF4_DOUBLE }

    /**
     * Loads the weights; with {@code quant != NONE} the seven projection weights of every layer become NF4 tensors
     * (embeddings, norms and the output head keep their type). Weights a checkpoint already stores in bitsandbytes
     * 4-bit form are read as NF4 whatever {@code quant} says.
     */
    public static LlamaWeights load(Path dir, LlamaConfig c, Backend be, DType storage, Quantization quant) throws IOException {
        List<Tensor> owned = new ArrayList<>();
        try (SafeTensorsCheckpoint ck = SafeTensorsCheckpoint.open(dir)) {
            java.util.function.BiFunction<String, int[], Tensor> get = (name, shape) -> {
                try {
                    Tensor t = Weights.upload(be, ck, name, shape, storage);
                    owned.add(t);
                    return t;
                } catch (CheckpointFormatException e) {
                    throw new java.io.UncheckedIOException(e);
                }
            };
            try {
                int d = c.hiddenSize();
                Tensor emb = get.apply("model.embed_tokens.weight", new int[]{c.vocabSize(), d});
                List<Layer> layers = new ArrayList<>();
                for (int l = 0; l < c.numLayers(); l++) {
                    Map<Projection, Tensor> w = new EnumMap<>(Projection.class), b = new EnumMap<>(Projection.class);
                    for (Projection p : Projection.values()) {
                        String name = p.path(l) + ".weight";
                        if (BnbNf4.isQuantized(ck, name) || quant != Quantization.NONE) {
                            Tensor t = nf4(be, ck, name, p.shape(c), quant == Quantization.NF4_DOUBLE || quant == Quantization.NONE);
                            owned.add(t);
                            w.put(p, t);
                        } else {
                            w.put(p, get.apply(name, p.shape(c)));
                        }
                        if (p.hasBias(c)) b.put(p, get.apply(p.path(l) + ".bias", new int[]{p.shape(c)[0]}));
                    }
                    layers.add(new Layer(get.apply("model.layers." + l + ".input_layernorm.weight", new int[]{d}),
                            get.apply("model.layers." + l + ".post_attention_layernorm.weight", new int[]{d}), w, b));
                }
                Tensor norm = get.apply("model.norm.weight", new int[]{d});
                Tensor head;
                if (c.tieWordEmbeddings()) head = emb;
                else if (ck.contains("lm_head.weight")) head = get.apply("lm_head.weight", new int[]{c.vocabSize(), d});
                else throw new CheckpointFormatException(dir, "lm_head.weight", "missing and tie_word_embeddings is false");
                LlamaWeights lw = new LlamaWeights(emb, norm, head, layers);
                lw.owned.addAll(owned);
                owned.forEach(be::freeze); // frozen base weights: backends may keep derived forms (CPU: packed panels)
                return lw;
            } catch (java.io.UncheckedIOException e) {
                owned.forEach(Tensor::close);
                throw e.getCause();
            } catch (IOException | RuntimeException e) {
                owned.forEach(Tensor::close);
                throw e;
            }
        }
    }

    /**
     * Random weights of the given architecture (values N(0, std) from a fast seeded generator, norms 1), for
     * benchmarks and tests that need a model of a real shape without a checkpoint.
     */
    public static LlamaWeights random(LlamaConfig c, Backend be, DType storage, long seed, double std) {
        return random(c, be, storage, seed, std, false);
    }

    /** As {@link #random(LlamaConfig, Backend, DType, long, double)}; {@code nf4} makes the projections NF4 (double-quantized). */
    public static LlamaWeights random(LlamaConfig c, Backend be, DType storage, long seed, double std, boolean nf4) {
        List<Tensor> owned = new ArrayList<>();
        java.util.function.Function<int[], Tensor> rnd = shape -> {
            Tensor t = be.allocate(storage, shape);
            owned.add(t);
            fillRandom(be, t, seed + owned.size() * 7919L, std);
            return t;
        };
        java.util.function.Function<Integer, Tensor> ones = d -> {
            Tensor t = be.allocate(storage, d);
            owned.add(t);
            be.kernels().fill(t, 1.0);
            return t;
        };
        int d = c.hiddenSize();
        Tensor emb = rnd.apply(new int[]{c.vocabSize(), d});
        List<Layer> layers = new ArrayList<>();
        for (int l = 0; l < c.numLayers(); l++) {
            Map<Projection, Tensor> w = new EnumMap<>(Projection.class), b = new EnumMap<>(Projection.class);
            for (Projection p : Projection.values()) {
                if (nf4) {
                    int[] sh = p.shape(c);
                    java.util.SplittableRandom r = new java.util.SplittableRandom(seed + 31L * l + p.ordinal());
                    float[] v = new float[sh[0] * sh[1]];
                    for (int i = 0; i < v.length; i++) v[i] = (float) ((r.nextDouble() + r.nextDouble() + r.nextDouble() - 1.5) * 2 * std);
                    Nf4Weight q = Nf4.quantize(v, true);
                    Tensor t = be.uploadNf4(dev.jsloth.api.Shape.of(sh), java.lang.foreign.MemorySegment.ofArray(q.packed()), q.scales());
                    owned.add(t);
                    w.put(p, t);
                } else {
                    w.put(p, rnd.apply(p.shape(c)));
                }
                if (p.hasBias(c)) b.put(p, rnd.apply(new int[]{p.shape(c)[0]}));
            }
            layers.add(new Layer(ones.apply(d), ones.apply(d), w, b));
        }
        Tensor norm = ones.apply(d);
        Tensor head = c.tieWordEmbeddings() ? emb : rnd.apply(new int[]{c.vocabSize(), d});
        LlamaWeights lw = new LlamaWeights(emb, norm, head, layers);
        lw.owned.addAll(owned);
        owned.forEach(be::freeze);
        return lw;
    }

    /** Fills a tensor with approximately N(0, std) values, generated on the host in slices of at most 1M values. */
    private static void fillRandom(Backend be, Tensor t, long seed, double std) {
        long n = t.numel();
        int slice = 1 << 20;
        Tensor flat = t.view(Math.toIntExact(n));
        java.util.SplittableRandom r = new java.util.SplittableRandom(seed);
        for (long start = 0; start < n; start += slice) {
            int len = (int) Math.min(slice, n - start);
            double[] v = new double[len];
            for (int i = 0; i < len; i++) v[i] = (r.nextDouble() + r.nextDouble() + r.nextDouble() - 1.5) * 2 * std; // Irwin-Hall, variance std^2
            try (Tensor tmp = be.upload(t.dtype(), dev.jsloth.api.Shape.of(len), v)) {
                be.kernels().copy(tmp, flat.rows(Math.toIntExact(start), len));
            }
        }
    }

    /** One projection weight as NF4: read from the bitsandbytes layout, or quantized now from the stored values. */
    private static Tensor nf4(Backend be, SafeTensorsCheckpoint ck, String name, int[] shape, boolean doubleQuant) throws CheckpointFormatException {
        try {
            if (BnbNf4.isQuantized(ck, name)) {
                BnbNf4.Loaded q = BnbNf4.read(ck, name, shape);
                return be.uploadNf4(dev.jsloth.api.Shape.of(shape), q.packed(), q.scales());
            }
            dev.jsloth.io.TensorEntry e = ck.entry(name);
            if (!e.hasShape(shape))
                throw new CheckpointFormatException(ck.file(name).path(), "tensor '" + name + "'", "shape " + java.util.Arrays.toString(e.shape())
                        + " does not match the config's " + java.util.Arrays.toString(shape));
            if (!e.isFloating())
                throw new CheckpointFormatException(ck.file(name).path(), "tensor '" + name + "'", "dtype " + e.dtype() + " is not a floating type"
                        + " (a 4-bit weight needs its bitsandbytes quant state beside it)");
            Nf4Weight q = Nf4.quantize(TensorBytes.decodeFloats(e.dtype(), ck.bytes(name)), doubleQuant);
            return be.uploadNf4(dev.jsloth.api.Shape.of(shape), java.lang.foreign.MemorySegment.ofArray(q.packed()), q.scales());
        } catch (CheckpointFormatException e) {
            throw e;
        } catch (IOException e) {
            throw new CheckpointFormatException(e.getMessage(), e);
        }
    }

    /** Whether any weight is held in NF4. */
    public boolean hasNf4() {
        for (Tensor t : owned) if (t.dtype() == DType.NF4) return true;
        return false;
    }

    /** Bytes the base weights occupy on the backend (NF4 weights count packed codes and scales). */
    public long backendBytes() {
        long n = 0;
        for (Tensor t : owned) n += t.dtype() == DType.NF4 ? t.numel() / 2 + 4L * Nf4.blocks(t.numel()) : t.dtype().byteSize(t.numel());
        return n;
    }

    public Tensor embedding() {
        return embedding;
    }

    public Tensor finalNorm() {
        return finalNorm;
    }

    public Tensor lmHead() {
        return lmHead;
    }

    public Layer layer(int i) {
        return layers.get(i);
    }

    public int numLayers() {
        return layers.size();
    }

    /** Bytes of all base weights on the backend. */
    public long bytes() {
        long n = 0;
        for (Tensor t : owned) n += t.dtype().byteSize(t.numel());
        return n;
    }

    @Override
    public void close() {
        owned.forEach(Tensor::close);
        owned.clear();
    }
}
