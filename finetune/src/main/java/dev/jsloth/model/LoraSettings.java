package dev.jsloth.model;

import java.util.EnumSet;
import java.util.Set;

/** LoRA hyper-parameters: rank r, alpha, rsLoRA scaling, and which projections are adapted. */
public record LoraSettings(int rank, double alpha, boolean rsLora, Set<Projection> targets) {
    public LoraSettings {
        if (rank <= 0) throw new IllegalArgumentException("LoRA rank must be positive, got " + rank);
        if (!(alpha > 0)) throw new IllegalArgumentException("LoRA alpha must be positive, got " + alpha);
        if (targets.isEmpty()) throw new IllegalArgumentException("LoRA needs at least one target projection");
        targets = Set.copyOf(targets);
    }

    /** All seven projections. */
    public static LoraSettings allProjections(int rank, double alpha) {
        return new LoraSettings(rank, alpha, false, EnumSet.allOf(Projection.class));
    }

    public double scaling() {
        return dev.jsloth.api.ops.LoraLinear.scaling(alpha, rank, rsLora);
    }
}
