package dev.jsloth.model;

import java.util.Locale;

/** The seven linear projections of a Llama decoder layer that LoRA can adapt, with their HF module names. */
public enum Projection {
    Q("self_attn", "q_proj"),
    K("self_attn", "k_proj"),
    V("self_attn", "v_proj"),
    O("self_attn", "o_proj"),
    GATE("mlp", "gate_proj"),
    UP("mlp", "up_proj"),
    DOWN("mlp", "down_proj");

    private final String parent;
    private final String module;

    Projection(String parent, String module) {
        this.parent = parent;
        this.module = module;
    }

    /** The PEFT target-module name, e.g. {@code q_proj}. */
    public String module() {
        return module;
    }

    /** The HF weight name inside layer {@code layer}, without suffix: {@code model.layers.3.self_attn.q_proj}. */
    public String path(int layer) {
        return "model.layers." + layer + "." + parent + "." + module;
    }

    /** {@code all-linear}, PEFT's name for every linear layer but the output head: the seven projections of a Llama layer. */
    public static final String ALL_LINEAR = "all-linear";

    /** Accepts {@code q_proj}, {@code q}, {@code Q}... */
    public static Projection parse(String name) {
        String n = name.trim().toLowerCase(Locale.ROOT);
        for (Projection p : values()) if (p.module.equals(n) || p.name().toLowerCase(Locale.ROOT).equals(n)) return p;
        throw new IllegalArgumentException("unknown projection '" + name + "' (expected one of q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)");
    }

    /** Output and input features of this projection under a config. */
    public int[] shape(LlamaConfig c) {
        return switch (this) {
            case Q -> new int[]{c.qDim(), c.hiddenSize()};
            case K, V -> new int[]{c.kvDim(), c.hiddenSize()};
            case O -> new int[]{c.hiddenSize(), c.qDim()};
            case GATE, UP -> new int[]{c.intermediateSize(), c.hiddenSize()};
            case DOWN -> new int[]{c.hiddenSize(), c.intermediateSize()};
        };
    }

    /** Whether this projection has a bias under the config (Qwen2: q, k, v). */
    public boolean hasBias(LlamaConfig c) {
        return switch (this) {
            case Q, K, V -> c.qkvBias();
            case O -> c.outputBias();
            case GATE, UP, DOWN -> c.mlpBias();
        };
    }
}
