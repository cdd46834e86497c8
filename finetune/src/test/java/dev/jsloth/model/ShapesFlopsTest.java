package dev.jsloth.model;

import dev.jsloth.api.blocks.Recompute;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;

/** The flop counts the bench reports, written out by hand for the "tiny" shape (hidden 128, MLP 344, 4 layers, 4 x 32 heads over 2). */
class ShapesFlopsTest {
    private static final LlamaConfig TINY = Shapes.get("tiny");
    private static final int R = 16, SEQ = 64, LAYERS = 4;
    // per layer, one token: 2 in out for a product, 2 r (in + out) for its adapter
    private static final double Q = 2.0 * 128 * 128 + 2.0 * R * (128 + 128), KV = 2.0 * 128 * 64 + 2.0 * R * (128 + 64),
            O = Q, GATE_WITHOUT_ITS_KEPT_XA = 2.0 * 128 * 344 + 2.0 * R * 344;

    @Test
    void trainingFlopsCountForwardAndInputGradientsOfEveryProductAttentionAndTheAdapters() {
        double dense = 4.0 * ((128.0 * 128 * 2 + 64.0 * 128 * 2 + 3.0 * 128 * 344) * LAYERS + 260.0 * 128);
        double attention = 3 * 4.0 * (SEQ / 2.0) * 128 * LAYERS;
        double lora = 3 * 2.0 * R * ((128 + 128) * 2 + (128 + 64) * 2 + (128 + 344) * 3) * LAYERS;
        assertEquals(dense + attention + lora, Shapes.trainingFlopsPerToken(TINY, SEQ, R), 1e-6);
    }

    @Test
    void recomputationCountsWhatEachPolicyRunsAgain() {
        double mlp = 2 * GATE_WITHOUT_ITS_KEPT_XA * LAYERS; // gate and up again; the down product and all three X A^T are not
        assertEquals(mlp, Shapes.recomputeFlopsPerToken(TINY, SEQ, R, Recompute.MLP), 1e-6);
        double allButAttention = mlp + (Q + 2 * KV + O) * LAYERS;
        assertEquals(allButAttention, Shapes.recomputeFlopsPerToken(TINY, SEQ, R, Recompute.ALL_BUT_ATTENTION), 1e-6);
        assertEquals(allButAttention + 4.0 * (SEQ / 2.0) * 128 * LAYERS, Shapes.recomputeFlopsPerToken(TINY, SEQ, R, Recompute.ALL), 1e-6);
    }
}
