package dev.jsloth.model;

import dev.jsloth.api.Backend;
import dev.jsloth.api.DType;
import dev.jsloth.api.Kernels;
import dev.jsloth.api.Shape;
import dev.jsloth.api.Tensor;
import dev.jsloth.api.autograd.BatchContext;
import dev.jsloth.api.autograd.Parameter;
import dev.jsloth.api.autograd.Tape;
import dev.jsloth.api.blocks.DecoderLayer;
import dev.jsloth.api.blocks.KvCache;
import dev.jsloth.api.blocks.LoraAttentionBlock;
import dev.jsloth.api.blocks.LoraMlpBlock;
import dev.jsloth.api.ops.CrossEntropy;
import dev.jsloth.api.ops.Dropout;
import dev.jsloth.api.ops.LoraLinear;
import dev.jsloth.api.ops.RopeTables;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import java.util.function.IntConsumer;

/**
 * A Llama-family causal language model with an optional LoRA adapter, built from the api's blocks:
 * embedding, N decoder layers (each a tape block, checkpointed during training by default), final RMSNorm, and
 * the output projection fused with the cross-entropy loss.
 *
 * <p>Not thread-safe: one thread at a time (it caches per-batch state such as the rotary tables). Two models on one
 * backend may run from two threads.
 */
public final class LlamaModel implements AutoCloseable {
    private static final long LOGITS_CHUNK_ELEMENTS = 1L << 25;
    /**
     * Fewest rows per logits chunk. At a 128,256 vocabulary the element budget alone gives 261-row chunks, whose output
     * products ran at 612-663 TFLOP/s on an H200; in 2,048-row chunks at 724-754, and an 8B step (4,096 tokens) spent
     * 11.7 ms instead of 13.8 in them and 1.8 instead of 2.4 in the cross-entropy kernels (profiled, same session).
     */
    private static final int MIN_CHUNK_ROWS = 2048;

    private final Path dir;
    private final LlamaConfig config;
    private final Backend backend;
    private final DType computeType;
    private final LlamaWeights weights;
    private LoraAdapter adapter;
    private List<DecoderLayer> layers;
    private dev.jsloth.api.blocks.Recompute recompute = dev.jsloth.api.blocks.Recompute.MLP;
    private int[] ropePositions;
    private RopeTables.Tables ropeTables; // of the last batch's positions: training repeats them every step
    private java.util.function.IntConsumer afterLayer; // during lossAndBackward only
    private Dropout.Pass dropout = Dropout.Pass.NONE; // during lossAndBackward only

    private LlamaModel(Path dir, LlamaConfig config, Backend backend, DType computeType, LlamaWeights weights) {
        this.dir = dir;
        this.config = config;
        this.backend = backend;
        this.computeType = computeType;
        this.weights = weights;
        this.layers = buildLayers();
    }

    /**
     * Loads {@code config.json} and the safetensors weights of a checkpoint directory; compute (activations) in
     * F32, F64, or BF16/F16 (mixed precision: 16-bit activations, F32 LoRA parameters and gradients).
     */
    public static LlamaModel load(Path dir, Backend backend, DType computeType) throws IOException {
        return load(dir, backend, computeType, LlamaWeights.Quantization.NONE);
    }

    /** As {@link #load(Path, Backend, DType)}, with QLoRA's NF4 projection weights when {@code quant} asks for them. */
    public static LlamaModel load(Path dir, Backend backend, DType computeType, LlamaWeights.Quantization quant) throws IOException {
        if (!computeType.isFloating() || computeType == DType.NF4)
            throw new IllegalArgumentException("compute type must be F32, F64, BF16 or F16, got " + computeType);
        LlamaConfig c = LlamaConfig.read(dir);
        // 16-bit compute stores the frozen weights in that type too, so every product runs on the tensor cores
        DType storage = computeType.byteSize(1) == 2 ? computeType : null;
        return new LlamaModel(dir, c, backend, computeType, LlamaWeights.load(dir, c, backend, storage, quant));
    }

    /** A model over already-built weights (e.g. {@link LlamaWeights#random}); {@code dir} may be null. */
    public static LlamaModel of(Path dir, LlamaConfig config, LlamaWeights weights, Backend backend, DType computeType) {
        return new LlamaModel(dir, config, backend, computeType, weights);
    }

    public Path directory() {
        return dir;
    }

    public LlamaConfig config() {
        return config;
    }

    public Backend backend() {
        return backend;
    }

    public DType computeType() {
        return computeType;
    }

    /** The type of the LoRA parameters, their gradients and optimizer state: F64 for F64 compute, else F32. */
    public DType parameterType() {
        return computeType == DType.F64 ? DType.F64 : DType.F32;
    }

    public LlamaWeights weights() {
        return weights;
    }

    public LoraAdapter adapter() {
        return adapter;
    }

    /** What gradient checkpointing recomputes before each layer's backward (default: the MLP half only). */
    public void recompute(dev.jsloth.api.blocks.Recompute policy) {
        recompute = java.util.Objects.requireNonNull(policy);
        for (DecoderLayer l : layers) l.recompute(policy);
    }

    public dev.jsloth.api.blocks.Recompute recompute() {
        return recompute;
    }

    /**
     * Attaches a LoRA adapter (the model does not own it: close it yourself, after the model is done with it); null
     * detaches. The adapter must be this model's: its layers within the model's, each pair's shapes those of its
     * projection here, its tensors on this model's backend (checked now, not at the next pass).
     */
    public void attach(LoraAdapter a) {
        if (a != null) {
            for (LoraAdapter.Pair pr : a.pairs()) {
                String where = "adapter pair " + pr.projection().path(pr.layer());
                if (pr.layer() < 0 || pr.layer() >= config.numLayers())
                    throw new IllegalArgumentException(where + ": the model has " + config.numLayers() + " layers");
                int[] w = pr.projection().shape(config), as = pr.a().value().shape().dims(), bs = pr.b().value().shape().dims();
                if (as.length != 2 || bs.length != 2 || as[1] != w[1] || bs[0] != w[0] || as[0] != bs[1])
                    throw new IllegalArgumentException(where + ": A " + java.util.Arrays.toString(as) + " and B " + java.util.Arrays.toString(bs)
                            + " do not fit the weight " + java.util.Arrays.toString(w) + " (A must be [r, " + w[1] + "], B [" + w[0] + ", r])");
                if (pr.a().value().backend() != backend || pr.b().value().backend() != backend)
                    throw new IllegalArgumentException(where + ": its tensors are on another backend than the model's (" + backend.name() + ")");
            }
        }
        this.adapter = a;
        this.layers = buildLayers();
    }

    /** A fresh PEFT-initialised adapter for this model, attached (the model does not own it: close it yourself). */
    public LoraAdapter attachNewAdapter(LoraSettings s, long seed) {
        LoraAdapter a = LoraAdapter.initialise(config, s, backend, parameterType(), seed);
        attach(a);
        return a;
    }

    public List<Parameter> trainableParameters() {
        return adapter == null ? List.of() : adapter.parameters();
    }

    private LoraLinear linear(int l, Projection p) {
        LlamaWeights.Layer w = weights.layer(l);
        LoraAdapter.Pair pair = adapter == null ? null : adapter.pair(l, p);
        return pair == null ? new LoraLinear(w.weights().get(p), w.biases().get(p))
                : new LoraLinear(w.weights().get(p), w.biases().get(p), pair.a(), pair.b(), pair.scaling(),
                adapter.settings().dropout(), (long) l * Projection.values().length + p.ordinal()); // its own dropout stream
    }

    /**
     * Whether projections that read one input form their rank-r products stacked ({@code -Djsloth.stackLora=false}
     * turns it off, for comparisons): the same sums, grouped differently.
     */
    private static final boolean STACK_LORA = !"false".equals(System.getProperty("jsloth.stackLora"));

    /** The A matrices of a group of projections sharing an input, stacked, or null (see {@link LoraAdapter#stackedA}). */
    private dev.jsloth.api.autograd.ParameterBuffer.Stack stackedA(int layer, List<Projection> group) {
        return STACK_LORA && adapter != null ? adapter.stackedA(layer, group) : null;
    }

    private List<DecoderLayer> buildLayers() {
        List<DecoderLayer> out = new ArrayList<>();
        for (int l = 0; l < config.numLayers(); l++) {
            LlamaWeights.Layer w = weights.layer(l);
            LoraAttentionBlock attn = new LoraAttentionBlock(w.inputNorm(), config.rmsNormEps(), linear(l, Projection.Q),
                    linear(l, Projection.K), linear(l, Projection.V), linear(l, Projection.O),
                    config.numHeads(), config.numKvHeads(), config.headDim(), stackedA(l, LoraAdapter.SHARED_INPUT.get(0)));
            LoraMlpBlock mlp = new LoraMlpBlock(w.postNorm(), config.rmsNormEps(), linear(l, Projection.GATE),
                    linear(l, Projection.UP), linear(l, Projection.DOWN), stackedA(l, LoraAdapter.SHARED_INPUT.get(1)));
            DecoderLayer layer = new DecoderLayer(attn, mlp);
            layer.recompute(recompute);
            out.add(layer);
        }
        return out;
    }

    /** Loss summed over counted tokens and their number. */
    public record LossResult(double lossSum, long tokens) {
        public double meanLoss() {
            return tokens == 0 ? Double.NaN : lossSum / tokens;
        }
    }

    /** Forward only: the loss of a batch. */
    public LossResult loss(Batch b) {
        return run(b, false, 0, false, null);
    }

    /**
     * Forward and backward: accumulates {@code gradScale * d(sum of token losses)} into the LoRA gradients. For the
     * mean loss of one batch, {@code gradScale = 1 / b.countedTokens()}; with gradient accumulation, one over the
     * tokens counted across all micro-batches.
     */
    public LossResult lossAndBackward(Batch b, double gradScale, boolean checkpointing) {
        return lossAndBackward(b, gradScale, checkpointing, null);
    }

    /**
     * {@link #lossAndBackward(Batch, double, boolean)}, calling {@code afterLayer} with each decoder layer's index as
     * soon as its backward is queued (its LoRA gradients are final from then on).
     */
    public LossResult lossAndBackward(Batch b, double gradScale, boolean checkpointing, java.util.function.IntConsumer afterLayer) {
        return lossAndBackward(b, gradScale, checkpointing, afterLayer, Dropout.Pass.NONE);
    }

    /**
     * {@link #lossAndBackward(Batch, double, boolean, java.util.function.IntConsumer)} as a training pass with LoRA
     * dropout: the adapters' masks are drawn from {@code dropout} ({@link Dropout.Pass#NONE}: none; without a dropout
     * probability in the adapter's settings it changes nothing). The same pass gives the same masks, so a resumed run
     * that passes what it passed before reproduces the uninterrupted one; a data-parallel rank passes the place of its
     * first token in the whole batch, so its tokens meet the masks one process would give them.
     */
    public LossResult lossAndBackward(Batch b, double gradScale, boolean checkpointing, java.util.function.IntConsumer afterLayer,
                                      Dropout.Pass dropout) {
        if (adapter == null) throw new IllegalStateException("no LoRA adapter attached: nothing to train");
        this.afterLayer = afterLayer;
        this.dropout = java.util.Objects.requireNonNull(dropout, "dropout");
        try {
            return run(b, true, gradScale, checkpointing, null);
        } finally {
            this.afterLayer = null;
            this.dropout = Dropout.Pass.NONE;
        }
    }

    /** The full logits {@code [batch*seq*vocab]} (row-major), for checks and scoring. */
    public double[] logits(Batch b) {
        double[][] out = new double[1][];
        run(b, false, 0, false, out);
        return out[0];
    }

    private void checkIds(Batch b) {
        for (int i = 0; i < b.inputIds().length; i++) {
            int id = b.inputIds()[i];
            if (id < 0 || id >= config.vocabSize())
                throw new IllegalArgumentException("input id " + id + " at row " + (i / b.seq()) + ", position " + (i % b.seq())
                        + " is outside the vocabulary [0, " + config.vocabSize() + ")");
        }
        for (int i = 0; i < b.labels().length; i++) {
            int l = b.labels()[i];
            if (l != CrossEntropy.IGNORE_INDEX && (l < 0 || l >= config.vocabSize()))
                throw new IllegalArgumentException("label " + l + " at row " + (i / b.seq()) + ", position " + (i % b.seq())
                        + " is outside the vocabulary [0, " + config.vocabSize() + ") and is not -100");
        }
        if (config.slidingWindow() != null && b.seq() > config.slidingWindow())
            throw new IllegalArgumentException("sequence length " + b.seq() + " exceeds the model's sliding window " + config.slidingWindow());
    }

    private LossResult run(Batch b, boolean backward, double gradScale, boolean checkpointing, double[][] logitsOut) {
        checkIds(b);
        DType params = adapter == null || adapter.buffer() == null ? null : adapter.buffer().values().dtype();
        DType rank = params == null ? null : backend.kernels().lowRankType(computeType, params);
        if (params != null && rank != params) {
            try (var pass = adapter.buffer().beginCompute(rank)) { // A and B in the rank-r path's type (bf16) once for the pass
                return runPass(b, backward, gradScale, checkpointing, logitsOut);
            }
        }
        return runPass(b, backward, gradScale, checkpointing, logitsOut);
    }

    private LossResult runPass(Batch b, boolean backward, double gradScale, boolean checkpointing, double[][] logitsOut) {
        Kernels k = backend.kernels();
        int n = b.batch() * b.seq(), d = config.hiddenSize();
        RopeTables.Tables rope = ropeTables(b.positions());
        try (Tensor ids = backend.uploadInts(Shape.of(n), b.inputIds());
             Tensor seg = b.segments() == null ? null : backend.uploadInts(Shape.of(b.batch(), b.seq()), b.segments());
             Tensor x = backend.allocateForOverwrite(computeType, Shape.of(n, d))) {
            k.embeddingForward(weights.embedding(), ids, x);
            BatchContext ctx = new BatchContext(b.batch(), b.seq(), rope.cos(), rope.sin(), seg, backward ? dropout : Dropout.Pass.NONE);
            try (Tape tape = backward ? new Tape(ctx, checkpointing) : Tape.forwardOnly(ctx)) { // evaluation keeps no activations
                Tensor h = x;
                for (DecoderLayer layer : layers) h = tape.forward(layer, h);
                try (Tensor normed = backend.allocateForOverwrite(computeType, Shape.of(n, d)); Tensor rstd = backend.allocateForOverwrite(computeType, Shape.of(n))) {
                    k.rmsNormForward(h, weights.finalNorm(), config.rmsNormEps(), normed, rstd);
                    if (logitsOut != null) logitsOut[0] = fullLogits(normed);
                    int[] shifted = b.shiftedLabels();
                    int chunk = (int) Math.max(1, Math.min(n, Math.max(MIN_CHUNK_ROWS, LOGITS_CHUNK_ELEMENTS / config.vocabSize())));
                    CrossEntropy.Result r = CrossEntropy.lmHead(normed, weights.lmHead(), shifted, backward, gradScale, chunk);
                    if (backward) {
                        try (Tensor dNormed = r.dHidden(); Tensor dh = backend.allocateForOverwrite(computeType, Shape.of(n, d))) {
                            k.rmsNormBackward(dNormed, h, weights.finalNorm(), rstd, dh, null);
                            tape.backwardParameters(dh, afterLayer); // the embeddings are frozen: layer 0's dX is not needed
                        }
                    }
                    return new LossResult(r.lossSum(), r.counted());
                }
            }
        }
    }

    private RopeTables.Tables ropeTables(int[] positions) {
        if (ropeTables == null || !Arrays.equals(positions, ropePositions)) {
            if (ropeTables != null) ropeTables.close();
            ropeTables = null;
            ropeTables = RopeTables.compute(backend, computeType, config.rope(), config.headDim(), positions);
            ropePositions = positions.clone();
        }
        return ropeTables;
    }

    private double[] fullLogits(Tensor normed) {
        int n = Math.toIntExact(normed.shape().rows());
        try (Tensor logits = backend.allocate(computeType, n, config.vocabSize())) {
            backend.kernels().gemm(false, true, 1.0, normed, weights.lmHead(), 0.0, logits);
            return backend.download(logits);
        }
    }

    /**
     * Where the model's warnings go: the JDK's platform logger (java.util.logging unless the application routes it
     * elsewhere, e.g. to SLF4J), not the embedding application's standard error.
     */
    private static final System.Logger LOG = System.getLogger(LlamaModel.class.getName());

    /** The most tokens (prompt and new ones) a generation's KV cache is made for. */
    static final int MAX_CACHE_TOKENS = 1 << 24;

    /**
     * Generates up to {@code opts.maxNewTokens()} tokens after {@code prompt} with a KV cache, calling
     * {@code onToken} for each as it is chosen; returns the new tokens.
     */
    public int[] generate(int[] prompt, GenerationOptions opts, IntConsumer onToken) {
        if (prompt.length == 0) throw new IllegalArgumentException("the prompt must hold at least one token");
        checkIds(new Batch(1, prompt.length, prompt, null, null));
        long wanted = (long) prompt.length + opts.maxNewTokens();
        if (wanted > MAX_CACHE_TOKENS) // the KV cache is allocated for all of it up front
            throw new IllegalArgumentException("a prompt of " + prompt.length + " tokens and " + opts.maxNewTokens() + " new ones: more than "
                    + MAX_CACHE_TOKENS + " tokens (max_position_embeddings is " + config.maxPositionEmbeddings() + "); ask for fewer new tokens");
        if (wanted > config.maxPositionEmbeddings()) // transformers warns and goes on; so does this, through the platform logger
            LOG.log(System.Logger.Level.WARNING, "{0} tokens pass the model''s max_position_embeddings ({1}): positions past it were not"
                    + " trained, the output may degrade", wanted, config.maxPositionEmbeddings());
        int capacity = prompt.length + opts.maxNewTokens();
        int window = config.slidingWindow() == null ? 0 : config.slidingWindow();
        List<KvCache> caches = new ArrayList<>();
        SplittableRandom rnd = new SplittableRandom(opts.seed());
        int[] out = new int[opts.maxNewTokens()];
        int produced = 0;
        try {
            for (int l = 0; l < layers.size(); l++) caches.add(new KvCache(backend, computeType, capacity, config.kvDim(), window));
            int[] feed = prompt;
            int pos = 0;
            while (produced < opts.maxNewTokens()) {
                double[] logits = lastLogits(feed, pos, caches);
                pos += feed.length;
                int next = Sampling.choose(logits, opts, rnd);
                out[produced++] = next;
                if (onToken != null) onToken.accept(next);
                if (opts.stopsAt(next)) break;
                feed = new int[]{next};
            }
        } finally {
            caches.forEach(KvCache::close);
        }
        return Arrays.copyOf(out, produced);
    }

    private double[] lastLogits(int[] tokens, int startPos, List<KvCache> caches) {
        Kernels k = backend.kernels();
        int n = tokens.length, d = config.hiddenSize();
        int[] pos = new int[n];
        for (int i = 0; i < n; i++) pos[i] = startPos + i;
        try (Tensor ids = backend.uploadInts(Shape.of(n), tokens);
             RopeTables.Tables rope = RopeTables.compute(backend, computeType, config.rope(), config.headDim(), pos);
             Tensor x = backend.allocate(computeType, n, d)) {
            k.embeddingForward(weights.embedding(), ids, x);
            BatchContext ctx = new BatchContext(1, n, rope.cos(), rope.sin(), null);
            Tensor h = x;
            try {
                for (int l = 0; l < layers.size(); l++) {
                    Tensor next = layers.get(l).forwardCached(h, ctx, caches.get(l));
                    if (h != x) h.close();
                    h = next;
                }
                try (Tensor last = backend.allocate(computeType, 1, d); Tensor rstd = backend.allocate(computeType, 1);
                     Tensor logits = backend.allocate(computeType, 1, config.vocabSize())) {
                    k.rmsNormForward(h.rows(n - 1, 1), weights.finalNorm(), config.rmsNormEps(), last, rstd);
                    k.gemm(false, true, 1.0, last, weights.lmHead(), 0.0, logits);
                    return backend.download(logits);
                }
            } finally {
                if (h != x) h.close(); // the last layer's output, also when a later step failed
            }
        }
    }

    /** Loads the LoRA adapter in {@code adapterDir} for this model and attaches it. */
    public LoraAdapter loadAdapter(Path adapterDir) throws IOException {
        LoraAdapter a = LoraAdapter.load(adapterDir, config, backend, parameterType());
        attach(a);
        return a;
    }

    @Override
    public void close() {
        if (ropeTables != null) ropeTables.close();
        weights.close();
    }

}
