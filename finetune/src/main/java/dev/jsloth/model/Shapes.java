package dev.jsloth.model;

import dev.jsloth.api.ops.RopeTables;

import java.util.LinkedHashMap;
import java.util.Map;

/** Named architectures for benchmarks: the public Llama shapes and small ones for CPUs. */
public final class Shapes {
    private Shapes() {
    }

    private static LlamaConfig llama(int hidden, int inter, int layers, int heads, int kv, int headDim, int vocab,
                                     RopeTables.Config rope, boolean tie, int maxPos) {
        return new LlamaConfig("llama", hidden, inter, layers, heads, kv, headDim, vocab, 1e-5, rope, tie, maxPos,
                false, false, false, null, 1, 2, "bfloat16", 0.0);
    }

    public static final Map<String, LlamaConfig> ALL = new LinkedHashMap<>();

    static {
        ALL.put("tiny", llama(128, 344, 4, 4, 2, 32, 260, RopeTables.Config.standard(10000), false, 512));
        ALL.put("llama-25m", llama(512, 1408, 6, 8, 4, 64, 8192, RopeTables.Config.standard(10000), true, 2048));
        ALL.put("tinyllama-1.1b", llama(2048, 5632, 22, 32, 4, 64, 32000, RopeTables.Config.standard(10000), false, 2048));
        ALL.put("llama3.2-1b", llama(2048, 8192, 16, 32, 8, 64, 128256, RopeTables.Config.llama3(500000, 32, 1, 4, 8192), true, 131072));
        ALL.put("llama3.1-8b", llama(4096, 14336, 32, 32, 8, 128, 128256, RopeTables.Config.llama3(500000, 8, 1, 4, 8192), false, 131072));
    }

    public static LlamaConfig get(String name) {
        LlamaConfig c = ALL.get(name);
        if (c == null) throw new IllegalArgumentException("unknown shape '" + name + "'; known: " + String.join(", ", ALL.keySet()));
        return c;
    }

    /** Parameters in the matrices a token passes through (projections and the output head; not the embedding gather). */
    public static long matmulParameters(LlamaConfig c) {
        long perLayer = 0;
        for (Projection p : Projection.values()) {
            int[] s = p.shape(c);
            perLayer += (long) s[0] * s[1];
        }
        return perLayer * c.numLayers() + (long) c.vocabSize() * c.hiddenSize();
    }

    public static long totalParameters(LlamaConfig c) {
        long emb = (long) c.vocabSize() * c.hiddenSize();
        long norms = (2L * c.numLayers() + 1) * c.hiddenSize();
        return matmulParameters(c) + (c.tieWordEmbeddings() ? 0 : emb) + norms;
    }

    /**
     * Training FLOPs per token of a LoRA step, frozen base, without recomputation: forward 2N plus backward 2N
     * (input gradients only), attention 3 x 4 x (seq/2) x (heads x headDim) per layer (causal: half the scores), and
     * the LoRA products 3 x 2r(in+out) per adapted projection.
     */
    public static double trainingFlopsPerToken(LlamaConfig c, int seq, int loraRank) {
        double dense = 4.0 * matmulParameters(c);
        double attention = 3.0 * 4.0 * (seq / 2.0) * c.qDim() * c.numLayers();
        double lora = 0;
        for (Projection p : Projection.values()) {
            int[] s = p.shape(c);
            lora += 3.0 * 2 * loraRank * (s[0] + s[1]);
        }
        return dense + attention + lora * c.numLayers();
    }

    /**
     * FLOPs per token that gradient checkpointing runs again before backward under {@code policy}, beyond
     * {@link #trainingFlopsPerToken} (which leaves them out, as MFU does; Hugging Face's reference benchmark counts them
     * in its TFLOP/s). Per layer, as the decoder layer's recompute runs it:
     * <ul>
     *   <li>{@link Recompute#MLP}: the gate and up products with their adapters' expansions ({@code 2 in out + 2r out}
     *       each: the MLP's rank-r products are kept under every policy); the RMSNorms and SwiGLU are not counted;</li>
     *   <li>{@link Recompute#ALL_BUT_ATTENTION}: that plus Q, K, V and O with their adapters (O's output is the MLP's
     *       input);</li>
     *   <li>{@link Recompute#ALL}: that plus the attention kernel's forward, {@code 4 (seq/2) qDim}.</li>
     * </ul>
     */
    public static double recomputeFlopsPerToken(LlamaConfig c, int seq, int loraRank, dev.jsloth.api.blocks.Recompute policy) {
        double perLayer = 0;
        for (Projection p : Projection.values()) {
            int[] s = p.shape(c);
            int out = s[0], in = s[1];
            perLayer += switch (p) {
                case GATE, UP -> 2.0 * in * out + 2.0 * loraRank * out; // their X A^T is kept
                case DOWN -> 0;                                           // only its X A^T, which is kept
                case Q, K, V, O -> policy == dev.jsloth.api.blocks.Recompute.MLP ? 0 : 2.0 * in * out + 2.0 * loraRank * (in + out);
            };
        }
        if (policy == dev.jsloth.api.blocks.Recompute.ALL) perLayer += 4.0 * (seq / 2.0) * c.qDim();
        return perLayer * c.numLayers();
    }
}
