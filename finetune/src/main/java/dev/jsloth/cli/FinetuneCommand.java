package dev.jsloth.cli;

import dev.jsloth.api.Backend;
import dev.jsloth.api.DType;
import dev.jsloth.api.spi.Backends;
import dev.jsloth.data.BadRowPolicy;
import dev.jsloth.data.LongRowPolicy;
import dev.jsloth.data.ChatTemplate;
import dev.jsloth.data.DatasetFormat;
import dev.jsloth.data.Message;
import dev.jsloth.demo.DemoAssets;
import dev.jsloth.model.GenerationOptions;
import dev.jsloth.model.LlamaModel;
import dev.jsloth.model.LoraAdapter;
import dev.jsloth.model.LoraSettings;
import dev.jsloth.model.Projection;
import dev.jsloth.tokenizer.Tokenizer;
import dev.jsloth.train.FineTuneJob;
import dev.jsloth.train.TrainingConfig;
import dev.jsloth.train.TrainingSummary;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.EnumSet;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import java.util.concurrent.Callable;

/** {@code jsloth finetune}: the main job. With no arguments, the built-in demo. */
@Command(name = "finetune", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Fine-tune a Llama-family model with LoRA.",
                "With no --model/--data: the built-in demo (a tiny model generated deterministically learns a small instruction dataset), "
                        + "with settings of its own (LoRA r 16, alpha 32; lr 4e-3, cosine, batch 5, sequences of 128, 100 steps) "
                        + "where an option is not given."})
final class FinetuneCommand implements Callable<Integer> {
    @Option(names = "--model", paramLabel = "DIR", description = "Hugging Face checkpoint directory (config.json, safetensors, tokenizer.json).")
    Path model;
    @Option(names = "--data", paramLabel = "FILE", description = "Dataset: .jsonl or .json; Alpaca (instruction/input/output), chat (messages) or text rows.")
    Path data;
    @Option(names = "--output", paramLabel = "DIR", description = "Output directory (default: jsloth-out/run, or jsloth-out/demo for the demo).")
    Path output;
    @Option(names = "--format", defaultValue = "auto", description = "auto, alpaca, chat or text (default: ${DEFAULT-VALUE}).")
    String format;
    @Option(names = "--template", paramLabel = "NAME", description = "Chat template: the model's own by default; or llama3, chatml, alpaca.")
    String template;
    @Option(names = "--train-on-prompts", description = "Train on prompt tokens too (default: loss on responses only).")
    boolean trainOnPrompts;
    @Option(names = "--bad-rows", defaultValue = "skip", description = "skip (with a count) or fail on malformed rows (default: ${DEFAULT-VALUE}).")
    String badRows;
    @Option(names = "--long-rows", description = "Rows longer than --seq-len: split (into pieces that overlap by one token, "
            + "so no target is lost), truncate, or auto: split plain text rows, truncate prompt/response rows (default: auto; with "
            + "--resume, what the checkpoint was trained with).")
    String longRows;
    @Option(names = "--lora-r", defaultValue = "16") int rank;
    @Option(names = "--lora-alpha", defaultValue = "16") double alpha;
    @Option(names = "--rslora", description = "Scale by alpha/sqrt(r) instead of alpha/r.") boolean rsLora;
    @Option(names = "--lora-dropout", paramLabel = "P",
            description = "LoRA dropout on the adapters' input while training, in [0, 1) (PEFT's lora_dropout; default: 0).")
    double loraDropout;
    @Option(names = "--targets", split = ",", paramLabel = "PROJ", description = "Projections to adapt (default: all seven: q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj; "
            + "all-linear, as PEFT names them).")
    List<String> targets;
    @Option(names = "--lr", defaultValue = "2e-4") double lr;
    @Option(names = "--epochs", defaultValue = "1") int epochs;
    @Option(names = "--max-steps", defaultValue = "0", description = "Stop after N optimizer steps (overrides --epochs).") int maxSteps;
    @Option(names = "--batch-size", defaultValue = "2") int batchSize;
    @Option(names = "--grad-accum", defaultValue = "4") int gradAccum;
    @Option(names = "--seq-len", defaultValue = "512") int seqLen;
    @Option(names = "--packing", description = "Pack several examples per sequence (attention kept within each).") boolean packing;
    @Option(names = "--schedule", defaultValue = "linear", description = "linear, cosine or constant_with_warmup (each after --warmup-steps), "
            + "or constant (no warmup), as transformers names them (default: ${DEFAULT-VALUE}).") String schedule;
    @Option(names = "--warmup-steps", defaultValue = "5", description = "Linear warmup: a whole number of steps, or "
            + "below 1 a ratio of the run's steps (rounded up), as transformers 5 reads warmup_steps (default: ${DEFAULT-VALUE}).")
    double warmup;
    @Option(names = "--warmup-ratio", paramLabel = "R", description = "Linear warmup over this ratio of the run's steps (rounded up), "
            + "in [0, 1), as transformers 4's warmup_ratio; instead of --warmup-steps.")
    Double warmupRatio;
    @Option(names = "--weight-decay", defaultValue = "0.01") double weightDecay;
    @Option(names = "--max-grad-norm", defaultValue = "1.0", description = "Clip the global gradient norm (0 = off).") double maxGradNorm;
    @Option(names = "--eval-split", defaultValue = "0", description = "Fraction of rows held out for evaluation.") double evalSplit;
    @Option(names = "--eval-every", defaultValue = "0", description = "Evaluate every N steps (and at the end).") int evalEvery;
    @Option(names = "--save-every", defaultValue = "0", description = "Checkpoint every N steps (atomic; --resume continues from the latest).") int saveEvery;
    @Option(names = "--save-total-limit", defaultValue = "2") int saveLimit;
    @Option(names = "--resume", description = "Continue from the latest complete checkpoint in --output.") boolean resume;
    @Option(names = "--no-gc", description = "Disable gradient checkpointing.") boolean noGc;
    @Option(names = "--recompute", defaultValue = "mlp", paramLabel = "POLICY",
            description = "What gradient checkpointing recomputes before each layer's backward: all (keeps the least, as "
                    + "Hugging Face does), all-but-attention (keeps the attention output), mlp (keeps the attention half; "
                    + "default, fastest). Default: ${DEFAULT-VALUE}.") String recompute;
    @Option(names = "--seed", defaultValue = "3407") long seed;
    @Option(names = "--skip-nonfinite", description = "Skip steps with NaN/Inf loss or gradients instead of stopping.") boolean skipNonFinite;
    @Option(names = "--merge", description = "Also write merged weights to OUTPUT/merged.") boolean merge;
    @Option(names = "--backend", paramLabel = "NAME") String backend;
    @Option(names = "--precision", description = "f32, f64, or bf16 (bf16 activations and frozen weights, F32 LoRA weights). "
            + "Default: the backend's preferred training type: bf16 on GPUs with tensor cores (cuda; opencl on NVIDIA), f32 elsewhere; "
            + "with --resume, the type the checkpoint was trained in.")
    BackendOptions.Precision precision;
    @Option(names = "--gpus", paramLabel = "N", description = "Data-parallel training on N GPUs of this host: one process per GPU, "
            + "--batch-size sequences each, LoRA gradients all-reduced with NCCL; only rank 0 writes. Across hosts start one process per GPU "
            + "with WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR, MASTER_PORT set (README).") Integer gpus;
    @picocli.CommandLine.Spec picocli.CommandLine.Model.CommandSpec spec;
    @Option(names = "--qlora", description = "QLoRA: quantize the projection weights to NF4 (double quantization) at load; they are dequantized tile by tile inside the GEMMs.") boolean qlora;

    @Override
    public Integer call() throws Exception {
        LongRowPolicy longRowPolicy = longRowPolicy(longRows); // before anything runs, ranks launched included
        if (ProcessLauncher.shouldLaunch(gpus)) {
            if (model == null && data == null) DemoAssets.ensure(Path.of("jsloth-out", "demo-assets")); // once, before the ranks read it
            return ProcessLauncher.launch(gpus, "finetune", argumentsAfter(spec), backend);
        }
        dev.jsloth.api.distributed.ProcessGroup group = ProcessLauncher.currentGroup().orElse(dev.jsloth.api.distributed.ProcessGroup.single());
        boolean root = group.isRoot();
        boolean demo = model == null && data == null;
        if (!demo && (model == null || data == null)) throw new IllegalArgumentException("give both --model DIR and --data FILE (or neither, for the demo)");
        TrainingConfig cfg = demo ? demoConfig() : config();
        LoraSettings lora = loraSettings(demo);
        Path modelDir = model, dataFile = data, out = output;
        if (demo) {
            Path assets = DemoAssets.ensure(Path.of("jsloth-out", "demo-assets"));
            modelDir = DemoAssets.modelDir(assets);
            dataFile = DemoAssets.dataset(assets);
            if (out == null) out = Path.of("jsloth-out", "demo");
            if (root) System.out.println("jsloth demo: fine-tuning a tiny Llama (" + DemoAssets.LAYERS + " layers, hidden " + DemoAssets.HIDDEN
                    + ", generated deterministically) on " + dataFile + " (country capitals, chat format)");
            if (root) {
                System.out.println();
                printGenerations("before training", modelDir, null);
            }
        }
        if (out == null) out = Path.of("jsloth-out", "run");
        FineTuneJob job = FineTuneJob.builder().model(modelDir).data(dataFile).output(out).lora(lora).training(cfg)
                .backend(backend).precision(precision == null ? null : precision.dtype).recompute(dev.jsloth.api.blocks.Recompute.parse(recompute))
                .format(DatasetFormat.valueOf(format.toUpperCase(Locale.ROOT))).badRows(BadRowPolicy.valueOf(badRows.toUpperCase(Locale.ROOT)))
                .longRows(longRowPolicy)
                .template(template).completionOnly(!trainOnPrompts).evalSplit(evalSplit).resume(resume).merge(merge)
                .quantization(qlora ? dev.jsloth.model.LlamaWeights.Quantization.NF4_DOUBLE : dev.jsloth.model.LlamaWeights.Quantization.NONE)
                .processGroup(group).build();
        TrainingSummary s = job.run(root ? List.of(new ProgressListener()) : List.of());
        if (!root) return 0;
        System.out.println();
        System.out.printf(Locale.ROOT, "trained %d steps in %.1f s: loss %.4f -> %.4f%s, %,.0f tokens/s%s, peak tensor memory %.1f MiB, peak heap %.1f MiB%n",
                s.steps(), s.seconds(), s.firstLoss(), s.lastLoss(), s.evalLoss() == null ? "" : String.format(Locale.ROOT, " (eval %.4f)", s.evalLoss()),
                s.tokensPerSecond(), Double.isNaN(s.steadyTokensPerSecond()) ? ""
                        : String.format(Locale.ROOT, " (%,.0f after the first steps)", s.steadyTokensPerSecond()),
                s.peakBackendBytes() / 1048576.0, s.peakHeapBytes() / 1048576.0);
        System.out.println("adapter (PEFT format): " + s.adapterDir().toAbsolutePath());
        System.out.println("metrics:               " + s.metricsFile().toAbsolutePath());
        System.out.println("loss curve:            " + s.plotFile().toAbsolutePath());
        if (demo) {
            System.out.println();
            printGenerations("after training", modelDir, s.adapterDir());
        }
        return 0;
    }

    /** The warmup as TrainingConfig takes it: --warmup-steps, or --warmup-ratio (always a ratio; the two together refused). */
    private double warmup() {
        if (warmupRatio == null) return warmup;
        if (given("--warmup-steps"))
            throw new IllegalArgumentException("give --warmup-steps or --warmup-ratio, not both");
        if (!(warmupRatio >= 0 && warmupRatio < 1))
            throw new IllegalArgumentException("--warmup-ratio takes a ratio of the run's steps in [0, 1), got " + warmupRatio
                    + " (a number of steps is --warmup-steps)");
        return warmupRatio;
    }

    private TrainingConfig config() {
        double warmup = warmup();
        if (TrainingConfig.Schedule.parse(schedule) == TrainingConfig.Schedule.CONSTANT && (given("--warmup-steps") || given("--warmup-ratio")) && warmup > 0)
            System.err.println("jsloth: note: --schedule constant takes no warmup (as transformers' constant); --schedule "
                    + "constant_with_warmup warms up over --warmup-steps");
        return new TrainingConfig(epochs, maxSteps, batchSize, gradAccum, seqLen, lr, weightDecay, 0.9, 0.999, 1e-8,
                TrainingConfig.Schedule.parse(schedule), warmup, maxGradNorm, !noGc, packing,
                saveEvery, saveLimit, evalEvery, seed, skipNonFinite, 1);
    }

    /**
     * The demo's settings where an option is not given: small batches, a high learning rate for a tiny model, a cosine
     * schedule, 100 steps (or the epochs asked for). Every option given is taken as it is.
     */
    TrainingConfig demoConfig() {
        double warmup = warmup();
        int steps = maxSteps > 0 ? maxSteps : given("--epochs") ? 0 : 100;
        TrainingConfig.Schedule sched = TrainingConfig.Schedule.parse(given("--schedule") ? schedule : "cosine");
        return new TrainingConfig(epochs, steps, given("--batch-size") ? batchSize : 5, given("--grad-accum") ? gradAccum : 1,
                given("--seq-len") ? seqLen : 128, given("--lr") ? lr : 4e-3, given("--weight-decay") ? weightDecay : 0.0, 0.9, 0.999, 1e-8,
                sched, warmup, maxGradNorm, !noGc, packing, saveEvery, saveLimit, evalEvery, seed, skipNonFinite, 1);
    }

    /** The adapter's settings: the options as given, where the demo takes r 16 and alpha 32 unless they are given. */
    LoraSettings loraSettings(boolean demo) {
        Set<Projection> targetSet = EnumSet.noneOf(Projection.class);
        if (targets == null || targets.isEmpty()) targetSet = EnumSet.allOf(Projection.class);
        else for (String t : targets) {
            if (t.trim().equalsIgnoreCase(Projection.ALL_LINEAR)) targetSet.addAll(EnumSet.allOf(Projection.class));
            else targetSet.add(Projection.parse(t));
        }
        int r = demo && !given("--lora-r") ? 16 : rank;
        double a = demo && !given("--lora-alpha") ? 32 : alpha;
        return new LoraSettings(r, a, rsLora, targetSet, loraDropout);
    }

    /** Whether {@code option} was given on the command line (not a default). */
    private boolean given(String option) {
        return spec != null && spec.commandLine().getParseResult() != null && spec.commandLine().getParseResult().hasMatchedOption(option);
    }

    private void printGenerations(String when, Path modelDir, Path adapterDir) throws Exception {
        Tokenizer tok = Tokenizer.load(modelDir);
        ChatTemplate tpl = FineTuneJob.template(modelDir, null);
        try (Backend be = Backends.create(backend != null ? backend : Backends.requestedName());
             LlamaModel m = LlamaModel.load(modelDir, be, DType.F32)) {
            LoraAdapter a = adapterDir == null ? null : m.loadAdapter(adapterDir);
            try {
                System.out.println("generations " + when + ":");
                for (String country : new String[]{"France", "Japan", "Kenya"}) {
                    String prompt = tpl.render(List.of(new Message("user", DemoAssets.question(country))), true);
                    int[] ids = dev.jsloth.data.ExampleBuilder.encodeRendered(tok, prompt);
                    int[] out = m.generate(ids, new GenerationOptions(24, 0, 1, 0, FineTuneJob.stopTokens(m, tok, true)), null);
                    String text = tok.decode(out, true).replace("\n", "\\n");
                    System.out.println("  " + DemoAssets.question(country) + "  ->  " + text);
                }
            } finally {
                if (a != null) a.close();
            }
        }
    }


    /** This subcommand's own arguments as given (for re-launching it once per GPU). */
    static List<String> argumentsAfter(picocli.CommandLine.Model.CommandSpec spec) {
        List<String> all = spec.commandLine().getParseResult().originalArgs();
        int at = all.indexOf(spec.name());
        return at < 0 ? all : all.subList(at + 1, all.size());
    }

    private static LongRowPolicy longRowPolicy(String v) {
        if (v == null) return null; // not given: auto, or a resumed checkpoint's
        try {
            return LongRowPolicy.valueOf(v.toUpperCase(Locale.ROOT));
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("--long-rows takes auto, split or truncate, got '" + v + "'");
        }
    }
}
