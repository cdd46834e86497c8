package dev.jsloth.model;

import java.util.EnumSet;
import java.util.Set;

/**
 * LoRA hyper-parameters: rank r, alpha, rsLoRA scaling, which projections are adapted, and LoRA dropout's probability
 * on the adapters' input while training (PEFT's {@code lora_dropout}; 0 = none).
 */
public record LoraSettings(int rank, double alpha, boolean rsLora, Set<Projection> targets, double dropout) {
    /** Without dropout. */
    public LoraSettings(int rank, double alpha, boolean rsLora, Set<Projection> targets) {
        this(rank, alpha, rsLora, targets, 0.0);
    }

    public LoraSettings {
        if (!(dropout >= 0 && dropout < 1)) throw new IllegalArgumentException("LoRA dropout must be in [0, 1), got " + dropout);
        if (rank <= 0) throw new IllegalArgumentException("LoRA rank must be positive, got " + rank);
        if (!(alpha > 0)) throw new IllegalArgumentException("LoRA alpha must be positive, got " + alpha);
        if (targets.isEmpty()) throw new IllegalArgumentException("LoRA needs at least one target projection");
        targets = Set.copyOf(targets);
    }

    /** All seven projections. */
    public static LoraSettings allProjections(int rank, double alpha) {
        return new LoraSettings(rank, alpha, false, EnumSet.allOf(Projection.class));
    }

    /** These settings with LoRA dropout {@code p}. */
    public LoraSettings withDropout(double p) {
        return new LoraSettings(rank, alpha, rsLora, targets, p);
    }

    public double scaling() {
        return dev.jsloth.api.ops.LoraLinear.scaling(alpha, rank, rsLora);
    }
}
