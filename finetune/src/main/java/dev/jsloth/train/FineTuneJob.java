package dev.jsloth.train;

import dev.jsloth.api.Backend;
import dev.jsloth.api.distributed.Communicator;
import dev.jsloth.api.distributed.ProcessGroup;
import dev.jsloth.api.DType;
import dev.jsloth.api.spi.Backends;
import dev.jsloth.data.BadRowPolicy;
import dev.jsloth.data.LongRowPolicy;
import dev.jsloth.data.ChatTemplate;
import dev.jsloth.data.DatasetException;
import dev.jsloth.data.DatasetFormat;
import dev.jsloth.data.DatasetLoader;
import dev.jsloth.data.Example;
import dev.jsloth.data.ExampleBuilder;
import dev.jsloth.data.LoadedDataset;
import dev.jsloth.data.Record;
import dev.jsloth.model.LlamaConfig;
import dev.jsloth.model.LlamaModel;
import dev.jsloth.model.LoraAdapter;
import dev.jsloth.model.LoraSettings;
import dev.jsloth.model.Merge;
import dev.jsloth.tokenizer.Tokenizer;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.SplittableRandom;
import java.util.function.Consumer;

/**
 * A complete fine-tuning run as a Java API (the {@code jsloth finetune} command is a thin layer over it): load a
 * Hugging Face checkpoint and its tokenizer, read a JSON/JSONL dataset (Alpaca, chat or plain text), render and
 * tokenize it with completion-only masking, split off an evaluation set, attach a fresh LoRA adapter, train, and
 * write the PEFT adapter (and optionally merged weights).
 *
 * <pre>{@code
 * TrainingSummary s = FineTuneJob.builder()
 *         .model(Path.of("my-llama")).data(Path.of("train.jsonl")).output(Path.of("out"))
 *         .lora(LoraSettings.allProjections(16, 16))
 *         .training(TrainingConfig.defaults().withSteps(1, 100))
 *         .build().run(List.of());
 * }</pre>
 */
public final class FineTuneJob {
    private final Path model, data, output;
    private final LoraSettings lora;
    private final TrainingConfig training;
    private final String backendName;
    private final DType precision;
    private final dev.jsloth.api.blocks.Recompute recompute;
    private final DatasetFormat format;
    private final BadRowPolicy badRows;
    private final LongRowPolicy longRows;
    private final String templateName;
    private final boolean completionOnly;
    private final double evalSplit;
    private final boolean resume;
    private final boolean merge;
    private final dev.jsloth.model.LlamaWeights.Quantization quantization;
    private final Consumer<String> log;
    private final ProcessGroup group;

    private FineTuneJob(Builder b) {
        this.model = b.model;
        this.data = b.data;
        this.output = b.output;
        this.lora = b.lora;
        this.training = b.training;
        this.backendName = b.backend;
        this.precision = b.precision;
        this.recompute = b.recompute;
        this.format = b.format;
        this.badRows = b.badRows;
        this.longRows = b.longRows;
        this.templateName = b.template;
        this.completionOnly = b.completionOnly;
        this.evalSplit = b.evalSplit;
        this.resume = b.resume;
        this.merge = b.merge;
        this.quantization = b.quantization;
        this.group = b.group;
        this.log = b.group.isRoot() ? b.log : line -> { };
    }

    public static Builder builder() {
        return new Builder();
    }

    /** Builder with Unsloth-like defaults (r 16, alpha 16, all seven projections). */
    public static final class Builder {
        private Path model, data, output = Path.of("jsloth-out");
        private LoraSettings lora = LoraSettings.allProjections(16, 16);
        private TrainingConfig training = TrainingConfig.defaults();
        private String backend;
        private DType precision; // null: the backend's preferred training type
        private dev.jsloth.api.blocks.Recompute recompute = dev.jsloth.api.blocks.Recompute.MLP;
        private DatasetFormat format = DatasetFormat.AUTO;
        private BadRowPolicy badRows = BadRowPolicy.SKIP;
        private LongRowPolicy longRows; // null: AUTO, or on --resume the checkpoint's
        private String template;
        private boolean completionOnly = true, resume, merge;
        private double evalSplit;
        private dev.jsloth.model.LlamaWeights.Quantization quantization = dev.jsloth.model.LlamaWeights.Quantization.NONE;
        private Consumer<String> log = System.out::println;
        private ProcessGroup group = ProcessGroup.single();

        public Builder model(Path p) { this.model = p; return this; }
        public Builder data(Path p) { this.data = p; return this; }
        public Builder output(Path p) { this.output = p; return this; }
        public Builder lora(LoraSettings s) { this.lora = s; return this; }
        public Builder training(TrainingConfig c) { this.training = c; return this; }
        /** Backend name; null = {@code -Djsloth.backend}/{@code JSLOTH_BACKEND} or the best available. */
        public Builder backend(String name) { this.backend = name; return this; }
        /**
         * The compute (activation) type; null (the default): the backend's {@link Backend#preferredTrainingType}, bf16 on
         * GPUs with tensor cores (F32 LoRA weights, gradients and optimizer state), F32 elsewhere; a resumed run takes
         * its checkpoint's.
         */
        public Builder precision(DType t) { this.precision = t; return this; }
        /** What gradient checkpointing recomputes (default: the MLP half only). */
        public Builder recompute(dev.jsloth.api.blocks.Recompute r) { this.recompute = java.util.Objects.requireNonNull(r); return this; }
        public Builder format(DatasetFormat f) { this.format = f; return this; }
        public Builder badRows(BadRowPolicy p) { this.badRows = p; return this; }
        /**
         * Rows longer than the sequence length: split (text rows, by default) or truncated (prompt/response rows). Not
         * given, a resumed run takes its checkpoint's (truncate for a checkpoint from before this setting existed).
         */
        public Builder longRows(LongRowPolicy p) { this.longRows = p; return this; }
        /** Chat template: null = the model's own (tokenizer_config.json), else a built-in (llama3, chatml, alpaca). */
        public Builder template(String name) { this.template = name; return this; }
        public Builder completionOnly(boolean on) { this.completionOnly = on; return this; }
        public Builder evalSplit(double fraction) { this.evalSplit = fraction; return this; }
        public Builder resume(boolean on) { this.resume = on; return this; }
        public Builder merge(boolean on) { this.merge = on; return this; }
        public Builder log(Consumer<String> sink) { this.log = sink; return this; }
        /** Data parallelism: this process's place among the ranks (one per GPU); default a single process. */
        public Builder processGroup(ProcessGroup g) { this.group = g; return this; }
        /** QLoRA: NF4 (optionally double-quantized) projection weights, dequantized tile by tile inside the GEMMs. */
        public Builder quantization(dev.jsloth.model.LlamaWeights.Quantization q) { this.quantization = q; return this; }

        public FineTuneJob build() {
            if (model == null) throw new IllegalArgumentException("no model directory given");
            if (data == null) throw new IllegalArgumentException("no dataset file given");
            if (!(evalSplit >= 0 && evalSplit < 1)) throw new IllegalArgumentException("eval split must be in [0, 1)");
            // checked here, before anything is loaded (each was a NullPointerException after the model had loaded)
            String[] names = {"output", "lora", "training", "format", "badRows", "log", "processGroup", "quantization"};
            Object[] values = {output, lora, training, format, badRows, log, group, quantization};
            for (int i = 0; i < names.length; i++)
                if (values[i] == null) throw new IllegalArgumentException("FineTuneJob." + names[i] + " is null");
            return new FineTuneJob(this);
        }
    }

    /**
     * The tokenized data of a run: training and evaluation examples, how many rows were dropped, truncated, or split
     * (into how many pieces in all), and the problems met.
     */
    public record PreparedData(List<Example> train, List<Example> eval, int skippedRows, int truncated, int splitRows, int pieces,
                               List<String> problems) {
    }

    /** {@link #prepare(Path, Tokenizer, ChatTemplate, int, DatasetFormat, BadRowPolicy, LongRowPolicy, boolean, int, double, long)} with long rows handled as {@link LongRowPolicy#AUTO}. */
    public static PreparedData prepare(Path data, Tokenizer tok, ChatTemplate template, int eosId, DatasetFormat format,
                                       BadRowPolicy policy, boolean completionOnly, int seqLen, double evalSplit, long seed)
            throws IOException {
        return prepare(data, tok, template, eosId, format, policy, LongRowPolicy.AUTO, completionOnly, seqLen, evalSplit, seed);
    }

    /** Loads, renders, masks, tokenizes and splits the dataset; rows longer than {@code seqLen} as {@code longRows} says. */
    public static PreparedData prepare(Path data, Tokenizer tok, ChatTemplate template, int eosId, DatasetFormat format,
                                       BadRowPolicy policy, LongRowPolicy longRows, boolean completionOnly, int seqLen,
                                       double evalSplit, long seed)
            throws IOException {
        if (seqLen < 2) throw new IllegalArgumentException("the sequence length (--seq-len) must be at least 2, got " + seqLen);
        LoadedDataset ds = DatasetLoader.load(data, format, policy);
        ExampleBuilder eb = new ExampleBuilder(tok, template, completionOnly, true, eosId);
        List<List<Example>> all = new ArrayList<>(); // per row: its example, or its pieces (kept together for the eval split)
        List<String> problems = new ArrayList<>(ds.problems());
        int truncated = 0, splitRows = 0, pieces = 0, skipped = ds.skipped();
        for (Record r : ds.records()) {
            Example e;
            try {
                e = eb.build(r);
            } catch (DatasetException ex) {
                if (policy == BadRowPolicy.FAIL) throw ex;
                problems.add(ex.getMessage());
                skipped++;
                continue;
            }
            if (e.inputIds().length > seqLen && longRows.splits(r)) {
                List<Example> cut = splitLongRow(e, seqLen);
                if (!cut.isEmpty()) {
                    all.add(cut);
                    splitRows++;
                    pieces += cut.size();
                    continue;
                }
            }
            boolean cut = e.inputIds().length > seqLen;
            if (cut) e = new Example(Arrays.copyOf(e.inputIds(), seqLen), Arrays.copyOf(e.labels(), seqLen));
            if (e.inputIds().length < 2 || e.trainedTokens() == 0) { // skipped, so not counted as truncated too
                problems.add(data + ":" + r.line() + ": the row has no trained tokens " + (cut ? "in its first " + seqLen
                        + " tokens (--seq-len)" : "after masking") + "; skipped");
                skipped++;
                continue;
            }
            if (cut) truncated++;
            all.add(List.of(e));
        }
        if (all.isEmpty()) throw new DatasetException(data + ": no usable training rows (" + skipped + " skipped)");
        int[] order = new int[all.size()];
        for (int i = 0; i < order.length; i++) order[i] = i;
        SplittableRandom r = new SplittableRandom(seed ^ 0x5EEDL);
        for (int i = order.length - 1; i > 0; i--) {
            int j = r.nextInt(i + 1), t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        int nEval = (int) Math.floor(all.size() * evalSplit);
        if (evalSplit > 0 && nEval == 0 && all.size() > 1) nEval = 1;
        List<Example> eval = new ArrayList<>(), train = new ArrayList<>();
        // rows, not pieces, are held out: a split row's pieces are all trained on or all evaluated
        for (int i = 0; i < order.length; i++) (i < nEval ? eval : train).addAll(all.get(order[i]));
        return new PreparedData(train, eval, skipped, truncated, splitRows, pieces, problems);
    }

    /**
     * {@link LongRowPolicy#SPLIT}: pieces of {@code seqLen} tokens, each starting with the last token of the one before
     * (stride {@code seqLen - 1}), so every label after the first position is a target in exactly one piece (the model
     * predicts position j + 1 from position j, and a piece's first label is never a target). Pieces without a trained
     * target are left out.
     */
    static List<Example> splitLongRow(Example e, int seqLen) {
        List<Example> out = new ArrayList<>();
        int n = e.inputIds().length, stride = seqLen - 1;
        for (int start = 0; start + 1 < n; start += stride) {
            int end = Math.min(n, start + seqLen);
            Example piece = new Example(Arrays.copyOfRange(e.inputIds(), start, end), Arrays.copyOfRange(e.labels(), start, end));
            boolean targets = false;
            for (int j = 1; j < piece.labels().length && !targets; j++) targets = piece.labels()[j] != Example.IGNORE;
            if (targets) out.add(piece);
            if (end == n) break;
        }
        return out;
    }

    /** The {@link Trainer#recordSetting run setting} of the long-row policy. */
    static final String LONG_ROWS = "long_rows";

    /**
     * The long-row policy of a run: the one given, else a resumed checkpoint's, else {@link LongRowPolicy#AUTO}. Given and
     * other than the checkpoint's, the run is refused: its examples, and so the data order the checkpoint continues,
     * would differ. A checkpoint that records none (written before the policy was recorded: by a version that truncated
     * every long row, or by one that already split them) decides nothing: the trainer's example count then tells whether
     * the data is the same (its message names {@code --long-rows}).
     */
    static LongRowPolicy longRowPolicy(LongRowPolicy given, Optional<Map<String, String>> saved, Path output) {
        if (saved.isEmpty() || !saved.get().containsKey(LONG_ROWS)) return given != null ? given : LongRowPolicy.AUTO;
        String name = saved.get().get(LONG_ROWS);
        LongRowPolicy before;
        try {
            before = LongRowPolicy.valueOf(name);
        } catch (IllegalArgumentException e) {
            throw new TrainingException("--resume: the latest checkpoint in " + output + " names an unknown long-row policy '" + name + "'");
        }
        if (given != null && given != before)
            throw new TrainingException("--resume: the latest checkpoint in " + output + " was trained with --long-rows "
                    + before.name().toLowerCase(java.util.Locale.ROOT) + ", now it is " + given.name().toLowerCase(java.util.Locale.ROOT)
                    + "; the examples and their order would differ. Resume with --long-rows "
                    + before.name().toLowerCase(java.util.Locale.ROOT) + " (or leave it out).");
        return before;
    }

    /**
     * The compute type of a run: the one given (saying so where a resumed checkpoint trained in another), else a resumed
     * checkpoint's, else the backend's preferred one.
     */
    static DType computeType(DType given, DType preferred, Optional<Map<String, String>> saved, Consumer<String> log) {
        String before = saved.map(m -> m.get(Trainer.COMPUTE_TYPE)).orElse(null);
        if (given != null) {
            if (before != null && !before.equals(given.name()))
                log.accept("note: the checkpoint resumed was trained in " + before + "; the run goes on in " + given + " as --precision says");
            return given;
        }
        if (before == null) return preferred;
        try {
            DType t = DType.valueOf(before);
            if (t != preferred) log.accept("resuming in " + t + ", the precision the checkpoint was trained in (--precision to change it)");
            return t;
        } catch (IllegalArgumentException e) {
            throw new TrainingException("--resume: the latest checkpoint names an unknown compute type '" + before + "' (run setting "
                    + Trainer.COMPUTE_TYPE + ")");
        }
    }

    /** The chat template for a model directory: a named built-in, else the model's own, else ChatML. */
    public static ChatTemplate template(Path modelDir, String name) throws IOException {
        if (name != null) return ChatTemplate.builtin(name);
        Path cfg = modelDir.resolve("tokenizer_config.json");
        if (Files.isRegularFile(cfg)) {
            Optional<ChatTemplate> own = ChatTemplate.fromTokenizerConfig(cfg);
            if (own.isPresent()) return own.get();
        }
        return ChatTemplate.builtin("chatml");
    }

    /**
     * Runs the job; {@code listeners} receive progress (one may end it early with {@link TrainingListener.StopTraining}).
     *
     * @throws dev.jsloth.io.CheckpointFormatException a model, adapter or checkpoint file that is malformed (names the
     *         file and field; an {@link IOException})
     * @throws dev.jsloth.tokenizer.TokenizerFormatException a tokenizer.json it cannot read (an {@link IOException})
     * @throws IOException the files cannot be read or the output written
     * @throws dev.jsloth.api.spi.BackendUnavailableException the backend asked for cannot run here (says why)
     * @throws dev.jsloth.api.DeviceOutOfMemoryException a tensor does not fit (nothing the run allocated stays alive)
     * @throws TrainingException the run cannot go on (non-finite loss without skipping, a resume that does not match)
     * @throws IllegalArgumentException a setting or the data do not allow training (the message names which)
     */
    public TrainingSummary run(List<TrainingListener> listeners) throws IOException {
        java.util.Objects.requireNonNull(listeners, "listeners (an empty list for none)");
        Tokenizer tok = Tokenizer.load(model);
        ChatTemplate tpl = template(model, templateName);
        refuseAttentionDropout(LlamaConfig.read(model), model.resolve("config.json"));
        Optional<Map<String, String>> saved = resume ? CheckpointStore.latestRunSettings(output) : Optional.empty();
        LongRowPolicy rows = longRowPolicy(longRows, saved, output);
        try (Backend be = Backends.create(backendName != null ? backendName : Backends.requestedName());
             LlamaModel m = LlamaModel.load(model, be, computeType(precision, be.preferredTrainingType(), saved, log), quantization)) {
            m.recompute(recompute);
            int eos = eosId(m, tok);
            PreparedData pd = prepare(data, tok, tpl, eos, format, badRows, rows, completionOnly, training.seqLen(), evalSplit, training.seed());
            log.accept(String.format("data: %d training and %d evaluation examples from %s (%d rows skipped, %d truncated to %d tokens%s)",
                    pd.train().size(), pd.eval().size(), data, pd.skippedRows(), pd.truncated(), training.seqLen(),
                    pd.splitRows() == 0 ? "" : String.format(", %d split into %d pieces", pd.splitRows(), pd.pieces())));
            for (String p : pd.problems().subList(0, Math.min(5, pd.problems().size()))) log.accept("  skipped: " + p);
            try (LoraAdapter a = m.attachNewAdapter(lora, training.seed())) {
                log.accept(String.format("model: %s on %s (%s) in %s%s, base weights %.1f MiB; LoRA r=%d alpha=%s on %s: %,d trainable parameters",
                        model, be.name(), be.description(), m.computeType(), m.weights().hasNf4() ? ", QLoRA (NF4 base weights)" : "",
                        m.weights().backendBytes() / 1048576.0, lora.rank(), lora.alpha(), lora.targets(), a.parameterCount()));
                Trainer t = new Trainer(m, pd.train(), pd.eval(), training, output, eos).recordSetting(LONG_ROWS, rows.name()).warnings(log);
                listeners.forEach(t::listen);
                TrainingSummary s;
                if (group.worldSize() > 1) {
                    try (Communicator comm = be.communicator(group)) {
                        log.accept(String.format("data parallel: %d processes, this is rank %d (%s %d); %d sequences per micro-batch in all",
                                group.worldSize(), group.rank(), be.name(), group.localRank(), training.batchSize() * group.worldSize()));
                        // a failure here (a peer gone, a full disk on rank 0) aborts the collectives under way: close
                        // would wait for them for ever
                        s = comm.abortOnFailure(() -> t.distributed(comm).run(resume));
                    }
                } else {
                    s = t.run(resume);
                }
                if (merge && group.isRoot()) {
                    Path merged = output.resolve("merged");
                    Merge.merge(model, s.adapterDir(), merged, be);
                    log.accept("merged weights written to " + merged);
                }
                return s;
            }
        }
    }

    /**
     * Training with a config's {@code attention_dropout} above 0 is refused: transformers drops attention
     * probabilities while training, this engine does not, so the run would silently differ from the model's recipe.
     * (Evaluation, loss and generation are not affected: transformers turns it off outside training.)
     */
    public static void refuseAttentionDropout(LlamaConfig c, Path configFile) {
        if (c.attentionDropout() > 0)
            throw new IllegalArgumentException(configFile + ": attention_dropout " + c.attentionDropout() + " is not supported for training"
                    + " (attention dropout is not implemented; set it to 0.0 in a copy of the checkpoint's config.json to train without it)");
    }

    /**
     * Tokens that end generation: every end-of-sequence id of the model's {@code config.json} and
     * {@code generation_config.json} (else {@link #eosId}), as transformers' {@code generate} uses them; for a chat
     * prompt also the end-of-turn and end-of-text tokens the tokenizer has (a template's turn ends there even where the
     * model's files name only the end of text).
     */
    public static int[] stopTokens(LlamaModel m, Tokenizer tok, boolean chat) throws IOException {
        java.util.LinkedHashSet<Integer> ids = new java.util.LinkedHashSet<>();
        if (m.directory() != null) ids.addAll(dev.jsloth.model.LlamaConfig.eosTokenIds(m.directory()));
        if (ids.isEmpty()) ids.add(eosId(m, tok));
        if (chat)
            for (String s : List.of("<|eot_id|>", "<|eom_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|end_of_text|>", "</s>", "<|endoftext|>"))
                tok.tokenToId(s).ifPresent(ids::add);
        return ids.stream().mapToInt(Integer::intValue).toArray();
    }

    /** End-of-sequence id: the config's, else the tokenizer's {@code </s>}/{@code <|end_of_text|>}/{@code <|im_end|>}. */
    public static int eosId(LlamaModel m, Tokenizer tok) {
        if (m.config().eosTokenId() != null) return m.config().eosTokenId();
        for (String s : List.of("</s>", "<|end_of_text|>", "<|eot_id|>", "<|im_end|>", "<|endoftext|>")) {
            var id = tok.tokenToId(s);
            if (id.isPresent()) return id.getAsInt();
        }
        throw new IllegalArgumentException("no eos_token_id in config.json and no known end-of-sequence token in the tokenizer");
    }
}
