package dev.jsloth.train;

/**
 * Hyper-parameters of a LoRA training run. {@code maxSteps > 0} overrides {@code epochs}; {@code warmupSteps}
 * counts optimizer steps (below 1: a ratio of the run's steps); {@code saveEvery}/{@code evalEvery} of 0 disable periodic checkpoints/evaluation
 * (a final adapter is always written). {@code logEvery} is not read by the trainer: every step goes to
 * {@code metrics.jsonl} and to the listeners, which choose what to print.
 */
public record TrainingConfig(int epochs, int maxSteps, int batchSize, int gradAccum, int seqLen, double lr,
                             double weightDecay, double beta1, double beta2, double eps, Schedule schedule,
                             double warmupSteps, double maxGradNorm, boolean checkpointing, boolean packing,
                             int saveEvery, int saveTotalLimit, int evalEvery, long seed, boolean skipNonFinite,
                             int logEvery) {
    /**
     * Learning-rate schedules, as transformers names them: {@code CONSTANT} takes no warmup (its
     * {@code get_constant_schedule}), the others start with a linear warmup from 0.
     */
    public enum Schedule {
        CONSTANT, CONSTANT_WITH_WARMUP, LINEAR, COSINE;

        /** The schedule of a name as transformers spells it ({@code cosine}, {@code constant_with_warmup}, ...). */
        public static Schedule parse(String name) {
            for (Schedule s : values()) if (s.name().equalsIgnoreCase(name)) return s;
            throw new IllegalArgumentException("--schedule takes linear, cosine, constant or constant_with_warmup, got '" + name + "'");
        }
    }

    public TrainingConfig {
        if (epochs <= 0 && maxSteps <= 0) throw new IllegalArgumentException("need epochs > 0 or max steps > 0");
        if (batchSize <= 0 || gradAccum <= 0 || seqLen <= 1) throw new IllegalArgumentException("batch size, grad accumulation must be positive and seq len > 1");
        if (!(lr > 0)) throw new IllegalArgumentException("learning rate must be positive");
        if (saveEvery < 0 || evalEvery < 0 || saveTotalLimit < 0) throw new IllegalArgumentException("negative step counts");
        if (!(warmupSteps >= 0) || (warmupSteps >= 1 && warmupSteps != Math.rint(warmupSteps)) || Double.isInfinite(warmupSteps))
            throw new IllegalArgumentException("warmup takes a whole number of steps or a ratio of the run's steps in [0, 1), got " + warmupSteps);
        if (!(maxGradNorm >= 0)) throw new IllegalArgumentException("max grad norm must be >= 0 (0 = no clipping)");
        if (!(weightDecay >= 0) || Double.isInfinite(weightDecay)) throw new IllegalArgumentException("weight decay must be a finite number >= 0, got " + weightDecay);
        if (!(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1))
            throw new IllegalArgumentException("AdamW betas must be in [0, 1), got " + beta1 + " and " + beta2);
        if (!(eps > 0) || Double.isInfinite(eps)) throw new IllegalArgumentException("AdamW eps must be a finite number > 0, got " + eps);
        if (schedule == null) throw new IllegalArgumentException("schedule is null (linear, cosine, constant or constant_with_warmup)");
        if (logEvery < 1) throw new IllegalArgumentException("logEvery must be at least 1, got " + logEvery);
    }

    /** Unsloth-like defaults: lr 2e-4, AdamW(0.9, 0.999, 1e-8), wd 0.01, linear schedule, 5 warmup steps, clip 1.0. */
    public static TrainingConfig defaults() {
        return new TrainingConfig(1, 0, 2, 4, 512, 2e-4, 0.01, 0.9, 0.999, 1e-8, Schedule.LINEAR, 5, 1.0,
                true, false, 0, 2, 0, 3407, false, 1);
    }

    public TrainingConfig withSteps(int epochs, int maxSteps) {
        return new TrainingConfig(epochs, maxSteps, batchSize, gradAccum, seqLen, lr, weightDecay, beta1, beta2, eps, schedule,
                warmupSteps, maxGradNorm, checkpointing, packing, saveEvery, saveTotalLimit, evalEvery, seed, skipNonFinite, logEvery);
    }

    public TrainingConfig withBatch(int batchSize, int gradAccum, int seqLen, boolean packing) {
        return new TrainingConfig(epochs, maxSteps, batchSize, gradAccum, seqLen, lr, weightDecay, beta1, beta2, eps, schedule,
                warmupSteps, maxGradNorm, checkpointing, packing, saveEvery, saveTotalLimit, evalEvery, seed, skipNonFinite, logEvery);
    }

    public TrainingConfig withOptimizer(double lr, double weightDecay, Schedule schedule, double warmupSteps, double maxGradNorm) {
        return new TrainingConfig(epochs, maxSteps, batchSize, gradAccum, seqLen, lr, weightDecay, beta1, beta2, eps, schedule,
                warmupSteps, maxGradNorm, checkpointing, packing, saveEvery, saveTotalLimit, evalEvery, seed, skipNonFinite, logEvery);
    }

    public TrainingConfig withSchedule(int saveEvery, int saveTotalLimit, int evalEvery, int logEvery) {
        return new TrainingConfig(epochs, maxSteps, batchSize, gradAccum, seqLen, lr, weightDecay, beta1, beta2, eps, schedule,
                warmupSteps, maxGradNorm, checkpointing, packing, saveEvery, saveTotalLimit, evalEvery, seed, skipNonFinite, logEvery);
    }

    public TrainingConfig withRun(boolean checkpointing, long seed, boolean skipNonFinite) {
        return new TrainingConfig(epochs, maxSteps, batchSize, gradAccum, seqLen, lr, weightDecay, beta1, beta2, eps, schedule,
                warmupSteps, maxGradNorm, checkpointing, packing, saveEvery, saveTotalLimit, evalEvery, seed, skipNonFinite, logEvery);
    }

    /**
     * Warmup steps in a run of {@code total}: {@code warmupSteps} itself, or where it is below 1 that ratio of the run
     * rounded up, as transformers 5 reads {@code warmup_steps} (its {@code warmup_ratio} before).
     */
    public long warmupSteps(long total) {
        return warmupSteps < 1 ? (long) Math.ceil(total * warmupSteps) : (long) warmupSteps;
    }

    /**
     * The learning rate of optimizer step {@code step} (counted from 1) of {@code total}, exactly as transformers'
     * schedulers give it (they see the 0-based step {@code s = step - 1}): {@code lr * s / warmup} during warmup,
     * then constant, linear to 0 ({@code (total - s) / (total - warmup)}) or half-cosine to 0; {@code CONSTANT} is
     * {@code lr} from the first step (no warmup, as transformers' {@code constant}).
     */
    public double learningRate(long step, long total) {
        long s = step - 1, warmup = warmupSteps(total);
        if (schedule == Schedule.CONSTANT) return lr;
        if (s < warmup) return lr * s / Math.max(1, warmup);
        return switch (schedule) {
            case CONSTANT, CONSTANT_WITH_WARMUP -> lr;
            case LINEAR -> lr * Math.max(0.0, (double) (total - s) / Math.max(1, total - warmup));
            case COSINE -> {
                double progress = (double) (s - warmup) / Math.max(1, total - warmup);
                yield lr * Math.max(0.0, 0.5 * (1 + Math.cos(Math.PI * progress)));
            }
        };
    }
}
