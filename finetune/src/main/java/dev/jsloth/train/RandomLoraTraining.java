package dev.jsloth.train;

import dev.jsloth.api.Backend;
import dev.jsloth.api.DType;
import dev.jsloth.api.blocks.Recompute;
import dev.jsloth.api.ops.Dropout;
import dev.jsloth.model.Batch;
import dev.jsloth.model.LlamaConfig;
import dev.jsloth.model.LlamaModel;
import dev.jsloth.model.LlamaWeights;
import dev.jsloth.model.LoraAdapter;
import dev.jsloth.model.LoraSettings;

import java.util.SplittableRandom;

/**
 * LoRA training steps on random data: a random-initialised model of a shape (frozen weights F32 on the CPU, BF16
 * elsewhere, or NF4 with {@code qlora}), rank r = alpha on all seven projections, AdamW, random token ids. What
 * {@code jsloth bench --shape} and the JMH step benchmark time.
 */
public final class RandomLoraTraining implements AutoCloseable {
    private final LlamaConfig config;
    private final LlamaWeights weights;
    private final LlamaModel model;
    private final LoraAdapter adapter;
    private final AdamW optimizer;
    private final Batch batch;
    private final double dropout;
    private long steps;

    /** {@code compute} null: BF16 on CUDA, F32 elsewhere; {@code dataSeed} seeds the token ids. */
    public RandomLoraTraining(Backend be, LlamaConfig config, int batchSize, int seq, int rank, boolean qlora, DType compute,
                              Recompute recompute, long dataSeed) {
        this(be, config, batchSize, seq, rank, qlora, compute, recompute, dataSeed, 0.0);
    }

    /** With LoRA dropout {@code dropout} on every adapter (each step its own masks). */
    public RandomLoraTraining(Backend be, LlamaConfig config, int batchSize, int seq, int rank, boolean qlora, DType compute,
                              Recompute recompute, long dataSeed, double dropout) {
        this.config = config;
        this.dropout = Dropout.check(dropout);
        SplittableRandom r = new SplittableRandom(dataSeed);
        int[] ids = new int[batchSize * seq];
        for (int i = 0; i < ids.length; i++) ids[i] = r.nextInt(config.vocabSize());
        batch = new Batch(batchSize, seq, ids, null, null);
        DType storage = be.name().equals("cpu") ? DType.F32 : DType.BF16;
        DType c = compute != null ? compute : be.preferredTrainingType();
        LlamaWeights w = LlamaWeights.random(config, be, storage, 3, 0.02, qlora);
        LlamaModel m = null;
        LoraAdapter a = null;
        try {
            m = LlamaModel.of(null, config, w, be, c);
            m.recompute(recompute);
            a = m.attachNewAdapter(LoraSettings.allProjections(rank, rank).withDropout(dropout), 4);
            optimizer = new AdamW(a.buffer(), 0.9, 0.999, 1e-8, 0.0);
        } catch (RuntimeException | Error e) { // nothing half-built stays allocated
            if (a != null) a.close();
            if (m != null) m.close();
            w.close();
            throw e;
        }
        weights = w;
        model = m;
        adapter = a;
    }

    /**
     * One step: gradients cleared, loss and backward (mean over {@code worldSize} ranks' tokens; with {@code buckets},
     * gradients all-reduced while the layers below run backward, as the trainer does), AdamW. Returns the mean loss.
     */
    public double step(boolean checkpointing, GradientBuckets buckets, int worldSize) {
        adapter.zeroGrads();
        // fresh masks each step (for speed, not the trainer's data-parallel semantics: with --gpus every rank draws these)
        Dropout.Pass pass = dropout > 0 ? new Dropout.Pass(Dropout.seed(0x5EED, ++steps), 0) : Dropout.Pass.NONE;
        double loss = model.lossAndBackward(batch, 1.0 / (batch.countedTokens() * worldSize), checkpointing, buckets, pass).meanLoss();
        if (buckets != null) buckets.finish();
        optimizer.step(1e-4);
        return loss;
    }

    public LlamaConfig config() {
        return config;
    }

    public LlamaWeights weights() {
        return weights;
    }

    public LlamaModel model() {
        return model;
    }

    public LoraAdapter adapter() {
        return adapter;
    }

    @Override
    public void close() {
        optimizer.close();
        adapter.close();
        model.close();
        weights.close();
    }
}
