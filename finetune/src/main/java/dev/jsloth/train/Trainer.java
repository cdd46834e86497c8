package dev.jsloth.train;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.jsloth.api.Backend;
import dev.jsloth.api.Tensor;
import dev.jsloth.api.distributed.Communicator;
import dev.jsloth.api.ops.Dropout;
import dev.jsloth.data.Example;
import dev.jsloth.io.AtomicFiles;
import dev.jsloth.io.Json;
import dev.jsloth.model.Batch;
import dev.jsloth.model.LlamaModel;
import dev.jsloth.model.LoraAdapter;

import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.lang.management.MemoryPoolMXBean;
import java.lang.management.MemoryType;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

/**
 * The LoRA training loop: micro-batches from a {@link Batcher}, gradient accumulation with token-weighted loss
 * (every micro-batch's gradient is scaled by one over the tokens counted across the whole accumulated step, so
 * accumulation equals one large batch), global-norm clipping, AdamW with a warmup schedule, periodic atomic
 * checkpoints, evaluation, metrics. The data position is a pure function of the step, so {@code resume}
 * reproduces the uninterrupted run's loss curve exactly on the same backend.
 */
public final class Trainer {
    private static final ObjectMapper COMPACT = new ObjectMapper();

    private final LlamaModel model;
    private final LoraAdapter adapter;
    private final List<Example> train;
    private final List<Example> eval;
    private final TrainingConfig cfg;
    private final Path output;
    private final int padId;
    private final List<TrainingListener> listeners = new ArrayList<>();
    private final List<double[]> evalHistory = new ArrayList<>();
    /** Written into every checkpoint's state (key {@code run}): how the run was set up beyond {@link TrainingConfig}. */
    private final java.util.Map<String, String> runSettings = new java.util.LinkedHashMap<>();
    private Communicator comm; // data parallelism: null = one process

    public Trainer(LlamaModel model, List<Example> train, List<Example> eval, TrainingConfig cfg, Path output, int padId) {
        if (model.adapter() == null) throw new IllegalArgumentException("attach a LoRA adapter to the model before training");
        this.model = model;
        this.adapter = model.adapter();
        this.train = train;
        this.eval = eval;
        this.cfg = cfg;
        this.output = output;
        this.padId = padId;
        runSettings.put(COMPUTE_TYPE, model.computeType().name());
    }

    /** The {@link #runSettings} key of the model's compute type ({@code F32}, {@code BF16}, ...). */
    public static final String COMPUTE_TYPE = "compute_type";

    /**
     * Records a setting in every checkpoint's state (under {@code run}), for a resumed run to read back (see
     * {@link CheckpointStore#latestRunSettings}): what the data preparation did, say, which the trainer cannot see.
     */
    public Trainer recordSetting(String key, String value) {
        runSettings.put(java.util.Objects.requireNonNull(key), java.util.Objects.requireNonNull(value));
        return this;
    }

    private java.util.function.Consumer<String> warn = System.err::println;

    /** Where the trainer's warnings go (a skipped step, an early stop, a plot not written); default standard error. */
    public Trainer warnings(java.util.function.Consumer<String> sink) {
        this.warn = java.util.Objects.requireNonNull(sink);
        return this;
    }

    public Trainer listen(TrainingListener l) {
        listeners.add(l);
        return this;
    }

    /**
     * Data-parallel training over {@code c}'s ranks: {@code batchSize} is per rank, so a global micro-batch holds
     * {@code batchSize x worldSize} rows in the data order a single process with that batch size would see; each rank
     * runs its rows, the LoRA gradients are summed over the ranks (one fused all-reduce after the backward passes) and
     * every rank takes the same optimizer step. Only rank 0 writes metrics, checkpoints and the adapter.
     */
    public Trainer distributed(Communicator c) {
        this.comm = c;
        return this;
    }

    private int world() {
        return comm == null ? 1 : comm.worldSize();
    }

    private boolean root() {
        return comm == null || comm.rank() == 0;
    }

    /**
     * The LoRA dropout pass of micro-batch {@code micro} of optimizer step {@code step} on this rank: its seed a function
     * of the run's seed and those numbers only (so a resumed run draws the masks the uninterrupted one drew), from this
     * rank's first token in the whole micro-batch on (so the masks do not depend on how many processes share it).
     */
    private Dropout.Pass dropoutPass(long step, int micro, Batch global) {
        long firstToken = world() == 1 ? 0 : (long) comm.rank() * cfg.batchSize() * global.seq();
        return new Dropout.Pass(Dropout.seed(Dropout.seed(cfg.seed(), step), micro), firstToken);
    }

    private Batcher batcher() {
        return new Batcher(train, cfg.batchSize() * world(), cfg.seqLen(), cfg.packing(), padId, cfg.seed());
    }

    /**
     * This rank's rows of a global micro-batch, or null when it has none (an epoch's last micro-batch may be short: the
     * rows go to the first ranks, exactly the rows one process would see).
     */
    private Batch share(Batch global) {
        if (world() == 1) return global;
        int from = comm.rank() * cfg.batchSize();
        if (from >= global.batch()) return null;
        return global.rows(from, Math.min(cfg.batchSize(), global.batch() - from));
    }

    public Path output() {
        return output;
    }

    /** Steps per epoch for this data and configuration. */
    public long stepsPerEpoch() {
        int micro = batcher().epoch(0).size();
        return (micro + cfg.gradAccum() - 1) / cfg.gradAccum();
    }

    public long totalSteps() {
        return cfg.maxSteps() > 0 ? cfg.maxSteps() : cfg.epochs() * stepsPerEpoch();
    }

    /** Trains from scratch, or from the latest complete checkpoint in the output directory when {@code resume}. */
    public TrainingSummary run(boolean resume) throws IOException {
        if (root()) Files.createDirectories(output);
        Backend be = model.backend();
        be.resetPeak();
        Batcher batcher = batcher();
        long perEpoch = stepsPerEpoch(), total = totalSteps();
        CheckpointStore store = new CheckpointStore(output, cfg.saveTotalLimit());
        Path metrics = output.resolve("metrics.jsonl");
        try (AdamW opt = adapter.buffer() != null ? new AdamW(adapter.buffer(), cfg.beta1(), cfg.beta2(), cfg.eps(), cfg.weightDecay())
                : new AdamW(adapter.parameters(), cfg.beta1(), cfg.beta2(), cfg.eps(), cfg.weightDecay())) {
            long start = 0;
            if (resume) {
                Optional<Path> ck = store.latest();
                if (ck.isEmpty()) throw new TrainingException("--resume: no complete checkpoint in " + output);
                JsonNode state = CheckpointStore.restore(ck.get(), adapter, opt);
                checkCompatible(state, ck.get());
                start = state.get("step").asLong();
                if (root()) keepMetricsUpTo(metrics, start);
            } else if (root()) {
                Files.deleteIfExists(metrics);
            }
            if (world() > 1) comm.broadcast(List.of(adapter.buffer().values()), 0); // one start on every rank
            List<TrainingListener> active = root() ? listeners : List.of(); // only rank 0 reports
            for (TrainingListener l : active) l.onStart(start, total);
            long t0 = System.nanoTime(), tokens = 0;
            List<double[]> progress = new java.util.ArrayList<>(); // {tokens, seconds} after each step, for the steady rate
            int cachedEpoch = -1;
            long lastEvalStep = -1;
            double lastEval = Double.NaN;
            List<Batcher.MicroBatch> epochBatches = List.of();
            Path lastCheckpoint = store.latest().orElse(null);
            long end = total; // a listener's StopTraining ends the run earlier
            stopReason = null;
            for (long step = start + 1; step <= total; step++) {
                int epoch = (int) ((step - 1) / perEpoch);
                if (epoch != cachedEpoch) {
                    epochBatches = batcher.epoch(epoch);
                    cachedEpoch = epoch;
                }
                int first = (int) ((step - 1) % perEpoch) * cfg.gradAccum();
                List<Batcher.MicroBatch> group = epochBatches.subList(first, Math.min(first + cfg.gradAccum(), epochBatches.size()));
                long counted = 0;
                for (Batcher.MicroBatch mb : group) counted += mb.batch().countedTokens();
                adapter.zeroGrads();
                double lossSum = 0;
                if (counted > 0) {
                    // the last micro-batch's backward finishes each layer's gradients in turn: they are reduced in
                    // buckets while the layers below still run backward
                    GradientBuckets buckets = world() > 1
                            ? new GradientBuckets(adapter, comm, model.config().numLayers(), GradientBuckets.DEFAULT_CAP_BYTES) : null;
                    for (int i = 0; i < group.size(); i++) {
                        Batcher.MicroBatch mb = group.get(i);
                        Batch mine = share(mb.batch());
                        java.util.function.IntConsumer hook = buckets != null && i == group.size() - 1 ? buckets : null;
                        if (mine != null && mine.countedTokens() > 0)
                            lossSum += model.lossAndBackward(mine, 1.0 / counted, cfg.checkpointing(), hook, dropoutPass(step, i, mb.batch())).lossSum();
                        tokens += mb.tokens();
                    }
                    if (world() > 1) { // the ranks' gradients and losses summed: the same step as one process would take
                        buckets.finish(); // all of it here on a rank without rows in the last micro-batch
                        lossSum = comm.allReduceSum(new double[]{lossSum})[0];
                    }
                }
                double loss = counted == 0 ? Double.NaN : lossSum / counted;
                double norm = gradNorm();
                boolean skipped = counted == 0;
                if (!skipped && (!Double.isFinite(loss) || !Double.isFinite(norm))) {
                    String what = String.format("step %d: %s (loss %s, gradient norm %s)", step,
                            Double.isFinite(loss) ? "non-finite gradients" : "non-finite loss", loss, norm);
                    if (!cfg.skipNonFinite())
                        throw new TrainingException(what + "; stopped. Last good checkpoint: "
                                + (lastCheckpoint == null ? "none (no checkpoint was written yet)" : lastCheckpoint)
                                + ". Lower the learning rate, check the data, or pass --skip-nonfinite to skip such steps.");
                    skipped = true;
                    if (root()) warn.accept("jsloth: skipping " + what); // every rank takes the same decision: one line
                }
                double lr = cfg.learningRate(step, total);
                if (!skipped) {
                    clip(norm);
                    opt.step(lr);
                }
                double elapsed = (System.nanoTime() - t0) / 1e9;
                progress.add(new double[]{tokens, elapsed});
                TrainingListener.StepMetrics m = new TrainingListener.StepMetrics(step, total, epoch, loss, lr, norm, tokens,
                        elapsed > 0 ? tokens / elapsed : 0, elapsed, skipped);
                if (root()) appendMetrics(metrics, m);
                tell(active, l -> l.onStep(m));
                if (cfg.evalEvery() > 0 && step % cfg.evalEvery() == 0 && !eval.isEmpty()) {
                    lastEval = evaluate(step, metrics);
                    lastEvalStep = step;
                }
                if (cfg.saveEvery() > 0 && step % cfg.saveEvery() == 0 && root()) {
                    lastCheckpoint = store.save(step, adapter, opt, state(step, epoch), baseModelName());
                    for (TrainingListener l : active) l.onCheckpoint(step, lastCheckpoint);
                }
                boolean stop = stopReason != null;
                if (world() > 1) stop = comm.allReduceSum(new double[]{stop ? 1 : 0})[0] > 0; // rank 0's listeners decide for all
                if (stop && step < total) {
                    end = step;
                    if (root()) warn.accept("jsloth: stopping after step " + step + " of " + total
                            + (stopReason == null ? "" : ": " + stopReason));
                    break;
                }
            }
            Double finalEval = null;
            if (!eval.isEmpty()) finalEval = lastEvalStep == end ? lastEval : evaluate(end, metrics); // not twice at the last step
            Path adapterDir = output.resolve("adapter");
            Path plot = output.resolve("loss.png");
            if (!root()) { // the root writes; the others report what they computed
                double seconds = (System.nanoTime() - t0) / 1e9;
                return new TrainingSummary(end - start, seconds, tokens, seconds > 0 ? tokens / seconds : 0, steadyRate(progress), Double.NaN, Double.NaN,
                        finalEval, be.memoryStats().peakBytes(), peakHeap(), adapterDir, metrics, plot);
            }
            saveAtomically(adapterDir);
            List<double[]> history = readHistory(metrics);
            try {
                LossPlot.write(plot, history, evalHistory);
            } catch (IOException | RuntimeException | Error e) { // e.g. a headless server without fonts: the run still counts
                warn.accept("jsloth: the loss plot " + plot + " was not written (" + e + "); the curve is in " + metrics);
            }
            double seconds = (System.nanoTime() - t0) / 1e9;
            TrainingSummary s = new TrainingSummary(end - start, seconds, tokens, seconds > 0 ? tokens / seconds : 0, steadyRate(progress),
                    history.isEmpty() ? Double.NaN : history.getFirst()[1], history.isEmpty() ? Double.NaN : history.getLast()[1],
                    finalEval, be.memoryStats().peakBytes(), peakHeap(), adapterDir, metrics, plot);
            Json.write(output.resolve("summary.json"), Json.nonFiniteAsNull(Json.MAPPER.valueToTree(s))); // a NaN (no eval, a short run) as null
            for (TrainingListener l : active) l.onEnd(s);
            return s;
        }
    }

    /** Writes the adapter into a temporary directory, then renames it into place (replacing an older one). */
    private void saveAtomically(Path dir) throws IOException {
        Path tmp = dev.jsloth.io.AtomicFiles.createBuildDirectory(output, ".tmp-adapter-");
        try {
            adapter.save(tmp, baseModelName());
            if (Files.exists(dir)) {
                Path old = output.resolve(".old-adapter-" + System.nanoTime());
                Files.move(dir, old, java.nio.file.StandardCopyOption.ATOMIC_MOVE);
                Files.move(tmp, dir, java.nio.file.StandardCopyOption.ATOMIC_MOVE);
                CheckpointStore.deleteTree(old);
            } else {
                Files.move(tmp, dir, java.nio.file.StandardCopyOption.ATOMIC_MOVE);
            }
            AtomicFiles.syncDirectory(output);
        } finally {
            CheckpointStore.deleteTree(tmp);
        }
    }

    /**
     * Tokens a second after the first fifth of the steps (at least the first one): the rate without the start's one-off
     * costs (kernel compilation, GEMM plans, the JIT); NaN for a run of under three steps.
     */
    static double steadyRate(List<double[]> progress) {
        if (progress.size() < 3) return Double.NaN;
        double[] from = progress.get(Math.max(1, progress.size() / 5) - 1), to = progress.getLast();
        return to[1] > from[1] ? (to[0] - from[0]) / (to[1] - from[1]) : Double.NaN;
    }

    private String baseModelName() {
        return model.directory() == null ? "(in-memory model)" : model.directory().toString();
    }

    private double gradNorm() {
        double ss = 0;
        ss += adapter.buffer().values().backend().kernels().sumOfSquares(adapter.buffer().grads());
        return Math.sqrt(ss);
    }

    /** torch.nn.utils.clip_grad_norm_: scale by max_norm / (norm + 1e-6) when that is below 1. */
    private void clip(double norm) {
        if (cfg.maxGradNorm() <= 0) return;
        double coef = cfg.maxGradNorm() / (norm + 1e-6);
        if (coef >= 1) return;
        adapter.buffer().values().backend().kernels().scale(adapter.buffer().grads(), coef);
    }

    /** Why a listener asked to stop (null: it did not). */
    private String stopReason;

    /** Calls each listener; a {@link TrainingListener.StopTraining} is noted (the run ends after this step), not thrown. */
    private void tell(List<TrainingListener> to, java.util.function.Consumer<TrainingListener> call) {
        for (TrainingListener l : to) {
            try {
                call.accept(l);
            } catch (TrainingListener.StopTraining stop) {
                if (stopReason == null) stopReason = stop.getMessage() == null ? "a listener asked to stop" : stop.getMessage();
            }
        }
    }

    /** Token-weighted mean loss over the evaluation examples. */
    private double evaluate(long step, Path metrics) throws IOException {
        Batcher b = new Batcher(eval, cfg.batchSize(), cfg.seqLen(), false, padId, cfg.seed());
        double sum = 0;
        long n = 0;
        List<Batcher.MicroBatch> all = b.epoch(0);
        for (int i = 0; i < all.size(); i++) {
            if (i % world() != (comm == null ? 0 : comm.rank())) continue; // micro-batches dealt out over the ranks
            LlamaModel.LossResult r = model.loss(all.get(i).batch());
            sum += r.lossSum();
            n += r.tokens();
        }
        if (world() > 1) {
            double[] both = comm.allReduceSum(new double[]{sum, n});
            sum = both[0];
            n = (long) both[1];
        }
        double loss = n == 0 ? Double.NaN : sum / n;
        evalHistory.add(new double[]{step, loss});
        if (!root()) return loss;
        ObjectNode o = COMPACT.createObjectNode().put("step", step).put("eval_loss", loss);
        Files.writeString(metrics, COMPACT.writeValueAsString(o) + "\n", StandardCharsets.UTF_8,
                java.nio.file.StandardOpenOption.CREATE, java.nio.file.StandardOpenOption.APPEND);
        tell(listeners, l -> l.onEval(step, loss));
        return loss;
    }

    private JsonNode state(long step, int epoch) {
        ObjectNode s = Json.MAPPER.createObjectNode();
        s.put("step", step);
        s.put("epoch", epoch);
        s.put("seed", cfg.seed());
        s.put("train_examples", train.size());
        s.put("world_size", world());
        s.put("global_batch", cfg.batchSize() * world());
        s.put("lora_dropout", adapter.settings().dropout());
        s.set("config", Json.MAPPER.valueToTree(cfg));
        s.set(CheckpointStore.RUN_SETTINGS, Json.MAPPER.valueToTree(runSettings));
        return s;
    }

    private void checkCompatible(JsonNode state, Path ck) throws IOException {
        JsonNode saved = state.get("config");
        JsonNode now = Json.MAPPER.valueToTree(cfg);
        int savedGlobal = state.has("global_batch") ? state.get("global_batch").asInt()
                : saved != null && saved.has("batchSize") ? saved.get("batchSize").asInt() : cfg.batchSize() * world();
        if (savedGlobal != cfg.batchSize() * world())
            throw new TrainingException("--resume: the checkpoint " + ck + " was trained with " + savedGlobal + " sequences per micro-batch over all "
                    + "processes, now it would be " + cfg.batchSize() + " x " + world() + "; keep batch size x processes the same "
                    + (savedGlobal % world() == 0 ? "(--batch-size " + savedGlobal / world() + " with " + world() + " process(es))" : "")
                    + " so the data order stays the same");
        for (String key : List.of("gradAccum", "seqLen", "packing", "seed")) {
            if (saved != null && saved.has(key) && !saved.get(key).asText().equals(now.get(key).asText()))
                throw new TrainingException("--resume: " + key + " was " + saved.get(key) + " in " + ck + " but is " + now.get(key)
                        + " now; the data order would differ. Resume with the same settings.");
        }
        checkSameAdapter(ck);
        double dropout = adapter.settings().dropout();
        // a checkpoint without the key was written before LoRA dropout existed: it trained with none
        double savedDropout = state.has("lora_dropout") ? state.get("lora_dropout").asDouble() : 0.0;
        if (savedDropout != dropout)
            throw new TrainingException("--resume: LoRA dropout was " + savedDropout + " in " + ck + " but is " + dropout
                    + " now; the steps after it would follow other maths. Resume with --lora-dropout " + savedDropout + ".");
        if (state.has("train_examples") && state.get("train_examples").asInt() != train.size())
            throw new TrainingException("--resume: the checkpoint " + ck + " was trained on " + state.get("train_examples").asInt()
                    + " examples, the data now gives " + train.size() + " (the same file, --seq-len, --eval-split and --long-rows give the same examples)");
    }

    /**
     * The checkpoint's adapter was trained with this run's LoRA settings: another alpha or rsLoRA setting would rescale
     * what it learnt, and other targets would drop (or add untrained) pairs; another rank fails on the shapes anyway.
     */
    private void checkSameAdapter(Path ck) throws IOException {
        Path file = ck.resolve(dev.jsloth.model.LoraAdapter.CONFIG_FILE);
        if (!Files.isRegularFile(file)) return;
        JsonNode saved = Json.read(file);
        dev.jsloth.model.LoraSettings now = adapter.settings();
        double alpha = saved.path("lora_alpha").asDouble(Double.NaN);
        if (saved.has("lora_alpha") && alpha != now.alpha())
            throw new TrainingException("--resume: the checkpoint " + ck + " was trained with --lora-alpha " + alpha + ", now it is " + now.alpha()
                    + "; resume with --lora-alpha " + alpha + ".");
        boolean rs = saved.path("use_rslora").asBoolean(false);
        if (rs != now.rsLora())
            throw new TrainingException("--resume: the checkpoint " + ck + " was trained " + (rs ? "with" : "without") + " --rslora; resume "
                    + (rs ? "with" : "without") + " it.");
        JsonNode t = saved.get("target_modules");
        if (t != null && t.isArray()) {
            java.util.Set<dev.jsloth.model.Projection> before = java.util.EnumSet.noneOf(dev.jsloth.model.Projection.class);
            for (JsonNode n : t) {
                try {
                    before.add(dev.jsloth.model.Projection.parse(n.asText()));
                } catch (IllegalArgumentException e) {
                    throw new dev.jsloth.io.CheckpointFormatException(file, "target_modules", e.getMessage());
                }
            }
            if (!before.equals(now.targets()))
                throw new TrainingException("--resume: the checkpoint " + ck + " adapts " + names(before) + ", this run " + names(now.targets())
                        + "; resume with --targets " + names(before) + ".");
        }
    }

    private static String names(java.util.Set<dev.jsloth.model.Projection> ps) {
        return ps.stream().map(dev.jsloth.model.Projection::module).collect(java.util.stream.Collectors.joining(","));
    }

    private static void appendMetrics(Path metrics, TrainingListener.StepMetrics m) throws IOException {
        ObjectNode o = COMPACT.createObjectNode();
        o.put("step", m.step()).put("epoch", m.epoch()).put("loss", m.loss()).put("lr", m.learningRate())
                .put("grad_norm", m.gradNorm()).put("tokens", m.tokens()).put("tokens_per_s", m.tokensPerSecond())
                .put("elapsed_s", m.elapsedSeconds());
        if (m.skipped()) o.put("skipped", true);
        Files.writeString(metrics, COMPACT.writeValueAsString(o) + "\n", StandardCharsets.UTF_8,
                java.nio.file.StandardOpenOption.CREATE, java.nio.file.StandardOpenOption.APPEND);
    }

    /** On resume, drop metric lines of steps after the checkpoint (an interrupted run may have logged them). */
    private static void keepMetricsUpTo(Path metrics, long step) throws IOException {
        if (!Files.exists(metrics)) return;
        StringBuilder kept = new StringBuilder();
        for (String line : Files.readAllLines(metrics, StandardCharsets.UTF_8)) {
            if (line.isBlank()) continue;
            try {
                JsonNode n = COMPACT.readTree(line);
                if (n.path("step").asLong(Long.MAX_VALUE) <= step && !n.has("eval_loss")) kept.append(line).append('\n');
            } catch (IOException e) {
                // a torn last line from a crash: dropped
            }
        }
        AtomicFiles.write(metrics, kept.toString().getBytes(StandardCharsets.UTF_8));
    }

    private static List<double[]> readHistory(Path metrics) throws IOException {
        List<double[]> out = new ArrayList<>();
        if (!Files.exists(metrics)) return out;
        for (String line : Files.readAllLines(metrics, StandardCharsets.UTF_8)) {
            JsonNode n = COMPACT.readTree(line);
            if (n.has("loss") && !n.path("skipped").asBoolean(false) && Double.isFinite(n.get("loss").asDouble()))
                out.add(new double[]{n.get("step").asDouble(), n.get("loss").asDouble()});
        }
        return out;
    }

    private static long peakHeap() {
        long peak = 0;
        for (MemoryPoolMXBean p : ManagementFactory.getMemoryPoolMXBeans())
            if (p.getType() == MemoryType.HEAP && p.getPeakUsage() != null) peak += p.getPeakUsage().getUsed();
        return peak;
    }
}
