package dev.jsloth.model;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.jsloth.api.Allocations;
import dev.jsloth.api.Backend;
import dev.jsloth.api.DType;
import dev.jsloth.api.Shape;
import dev.jsloth.api.Tensor;
import dev.jsloth.api.autograd.Parameter;
import dev.jsloth.api.autograd.ParameterBuffer;
import dev.jsloth.io.CheckpointFormatException;
import dev.jsloth.io.Json;
import dev.jsloth.io.SafeTensorsFile;
import dev.jsloth.io.SafeTensorsWriter;
import dev.jsloth.io.TensorEntry;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.EnumSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.SplittableRandom;
import java.util.TreeMap;
import java.util.TreeSet;

/**
 * The trainable LoRA weights of a model, one {@code (A, B)} pair per adapted projection, in Hugging Face PEFT's
 * on-disk format: {@code adapter_config.json} and {@code adapter_model.safetensors} with tensors named
 * {@code base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight} ({@code [r, in]}) and
 * {@code ...lora_B.weight} ({@code [out, r]}).
 */
public final class LoraAdapter implements AutoCloseable {
    public static final String CONFIG_FILE = "adapter_config.json";
    public static final String WEIGHTS_FILE = "adapter_model.safetensors";
    private static final String PREFIX = "base_model.model.";

    /** One adapted projection. */
    public record Pair(int layer, Projection projection, Parameter a, Parameter b, double scaling) {
    }

    private LoraSettings settings;
    private final Map<String, Pair> pairs; // key: layer + "." + projection
    private final ParameterBuffer buffer;  // every A and B, end to end (null for an adapter without pairs)
    private final TreeMap<Integer, long[]> layerSpans = new TreeMap<>(); // layer -> {first element, elements} in the buffer

    /**
     * Projections that read one input, whose A matrices the buffer lays end to end (in this order) so that one product
     * forms all their rank-r products ({@link #stackedA}).
     */
    static final List<List<Projection>> SHARED_INPUT = List.of(List.of(Projection.Q, Projection.K, Projection.V),
            List.of(Projection.GATE, Projection.UP));

    private LoraAdapter(LoraSettings settings, Map<String, Pair> pairs) {
        this.settings = settings;
        // layer by layer (layerGradients takes a layer's span); in a layer, the A matrices of the SHARED_INPUT groups
        // first, end to end in group order, then the other A and every B in pair order
        List<Projection> stackedOrder = SHARED_INPUT.stream().flatMap(List::stream).toList();
        Map<Integer, List<Pair>> byLayer = new TreeMap<>();
        for (Pair p : pairs.values()) byLayer.computeIfAbsent(p.layer(), l -> new ArrayList<>()).add(p);
        List<Parameter> all = new ArrayList<>();
        long at = 0;
        for (Map.Entry<Integer, List<Pair>> layer : byLayer.entrySet()) {
            List<Parameter> inLayer = new ArrayList<>();
            layer.getValue().stream().filter(p -> stackedOrder.contains(p.projection()))
                    .sorted(java.util.Comparator.comparingInt(p -> stackedOrder.indexOf(p.projection())))
                    .forEach(p -> inLayer.add(p.a()));
            for (Pair p : layer.getValue()) {
                if (!stackedOrder.contains(p.projection())) inLayer.add(p.a());
                inLayer.add(p.b());
            }
            long count = 0;
            for (Parameter p : inLayer) count += p.value().numel();
            layerSpans.put(layer.getKey(), new long[]{at, count});
            at += count;
            all.addAll(inLayer);
        }
        this.buffer = all.isEmpty() ? null : ParameterBuffer.of(all);
        Map<Parameter, Parameter> now = new java.util.IdentityHashMap<>();
        for (int i = 0; i < all.size(); i++) now.put(all.get(i), buffer.parameters().get(i));
        Map<String, Pair> moved = new LinkedHashMap<>();
        for (Map.Entry<String, Pair> e : pairs.entrySet()) {
            Pair p = e.getValue();
            moved.put(e.getKey(), new Pair(p.layer(), p.projection(), now.get(p.a()), now.get(p.b()), p.scaling()));
        }
        this.pairs = moved;
    }

    /**
     * The A matrices of {@code layer}'s projections in {@code group} (one of {@link #SHARED_INPUT}) as one stacked
     * matrix, or null unless every projection of the group is adapted (at any ranks).
     */
    public ParameterBuffer.Stack stackedA(int layer, List<Projection> group) {
        if (buffer == null) return null;
        List<Parameter> as = new ArrayList<>();
        for (Projection p : group) {
            Pair pair = pair(layer, p);
            if (pair == null) return null;
            as.add(pair.a());
        }
        return buffer.stack(as);
    }

    /** The parameters' shared storage (one optimizer launch, one gradient clear): null when nothing is adapted. */
    public ParameterBuffer buffer() {
        return buffer;
    }

    /**
     * The gradients of layer {@code layer}'s pairs as one view of the shared gradient buffer (pairs are stored layer
     * by layer), or null when the layer has none.
     */
    public Tensor layerGradients(int layer) {
        return layerGradients(layer, layer);
    }

    /** The gradients of layers {@code first..last}'s pairs as one view (contiguous: parameters are stored layer by layer), or null. */
    public Tensor layerGradients(int first, int last) {
        if (first > last) return null;
        java.util.SortedMap<Integer, long[]> range = layerSpans.subMap(first, last + 1);
        if (range.isEmpty()) return null;
        long count = 0;
        for (long[] span : range.values()) count += span[1];
        return buffer.grads().rows(Math.toIntExact(range.get(range.firstKey())[0]), Math.toIntExact(count));
    }

    /** Clears every gradient (one fill over the shared buffer). */
    public void zeroGrads() {
        if (buffer != null) buffer.zeroGrads();
    }

    private static String key(int layer, Projection p) {
        return layer + "." + p.name();
    }

    public LoraSettings settings() {
        return settings;
    }

    /**
     * Sets LoRA dropout's probability for training from now on (a training choice, not part of the weights: a loaded
     * PEFT adapter says what it was trained with). A model this adapter is attached to picks it up when it is attached
     * again ({@link LlamaModel#attach}).
     */
    public void setDropout(double p) {
        settings = settings.withDropout(p);
    }

    /** The pair adapting {@code p} in {@code layer}, or null. */
    public Pair pair(int layer, Projection p) {
        return pairs.get(key(layer, p));
    }

    public List<Pair> pairs() {
        return List.copyOf(pairs.values());
    }

    /** Every trainable tensor: A then B of each pair, in layer and projection order. */
    public List<Parameter> parameters() {
        List<Parameter> out = new ArrayList<>();
        for (Pair p : pairs.values()) {
            out.add(p.a());
            out.add(p.b());
        }
        return out;
    }

    public long parameterCount() {
        long n = 0;
        for (Parameter p : parameters()) n += p.value().numel();
        return n;
    }

    /**
     * A fresh adapter with PEFT's default initialisation: A ~ kaiming-uniform(a = sqrt 5), i.e. U(-1/sqrt(in),
     * 1/sqrt(in)), and B = 0, so the adapted model starts equal to the base.
     */
    public static LoraAdapter initialise(LlamaConfig cfg, LoraSettings s, Backend be, DType dtype, long seed) {
        SplittableRandom rnd = new SplittableRandom(seed);
        Map<String, Pair> pairs = new LinkedHashMap<>();
        try (Allocations made = new Allocations()) { // a failure part way frees the pairs made so far
            for (int l = 0; l < cfg.numLayers(); l++) {
                for (Projection p : Projection.values()) {
                    if (!s.targets().contains(p)) continue;
                    int[] shape = p.shape(cfg);
                    int out = shape[0], in = shape[1];
                    double bound = 1.0 / Math.sqrt(in);
                    double[] a = new double[s.rank() * in];
                    for (int i = 0; i < a.length; i++) a[i] = rnd.nextDouble(-bound, bound);
                    Parameter pa = made.add(new Parameter(peftName(l, p, "lora_A"), be.upload(dtype, Shape.of(s.rank(), in), a)));
                    Parameter pb = made.add(new Parameter(peftName(l, p, "lora_B"), be.allocate(dtype, Shape.of(out, s.rank()))));
                    pairs.put(key(l, p), new Pair(l, p, pa, pb, s.scaling()));
                }
            }
            return made.handOver(new LoraAdapter(s, pairs));
        }
    }

    /** The PEFT tensor name (without the {@code .weight} suffix). */
    public static String peftName(int layer, Projection p, String which) {
        return PREFIX + p.path(layer) + "." + which;
    }

    /** Loads a PEFT LoRA adapter directory for a model of config {@code cfg}. */
    public static LoraAdapter load(Path dir, LlamaConfig cfg, Backend be, DType dtype) throws IOException {
        Path cfgFile = dir.resolve(CONFIG_FILE);
        JsonNode c = Json.read(cfgFile);
        String type = c.path("peft_type").asText("LORA");
        if (!type.equals("LORA")) throw new CheckpointFormatException(cfgFile, "peft_type", "'" + type + "' is not supported (only LORA)");
        if (c.path("use_dora").asBoolean(false)) throw new CheckpointFormatException(cfgFile, "use_dora", "DoRA is not supported");
        if (!c.path("bias").asText("none").equals("none"))
            throw new CheckpointFormatException(cfgFile, "bias", "'" + c.path("bias").asText() + "' is not supported (only \"none\")");
        // fan_in_fan_out: PEFT sets it back to false for nn.Linear (with a warning) and loads the same tensors, so it is
        // accepted either way
        checkFieldsThatChangeTheMaths(cfgFile, c);
        if (c.hasNonNull("modules_to_save") && !c.get("modules_to_save").isEmpty())
            throw new CheckpointFormatException(cfgFile, "modules_to_save", "fully trained extra modules are not supported");
        if (c.hasNonNull("alpha_pattern") && !c.get("alpha_pattern").isEmpty())
            throw new CheckpointFormatException(cfgFile, "alpha_pattern", "per-module alpha is not supported");
        JsonNode rNode = c.get("r"), alphaNode = c.get("lora_alpha");
        if (rNode == null || !rNode.canConvertToInt() || rNode.asInt() <= 0) throw new CheckpointFormatException(cfgFile, "r", "missing or not a positive integer");
        if (alphaNode == null || !alphaNode.isNumber() || !(alphaNode.asDouble() > 0) || Double.isInfinite(alphaNode.asDouble()))
            throw new CheckpointFormatException(cfgFile, "lora_alpha", "missing or not a positive number, got " + alphaNode);
        JsonNode rsNode = c.get("use_rslora");
        if (rsNode != null && !rsNode.isNull() && !rsNode.isBoolean()) throw new CheckpointFormatException(cfgFile, "use_rslora", "must be true or false, got " + rsNode);
        boolean rs = rsNode != null && rsNode.asBoolean(false);
        double alpha = alphaNode.asDouble();
        JsonNode dropNode = c.get("lora_dropout");
        if (dropNode != null && !dropNode.isNull() && (!dropNode.isNumber() || !(dropNode.asDouble() >= 0 && dropNode.asDouble() < 1)))
            throw new CheckpointFormatException(cfgFile, "lora_dropout", "must be a number in [0, 1), got " + dropNode);
        double dropout = dropNode == null || dropNode.isNull() ? 0.0 : dropNode.asDouble();

        Path weights = dir.resolve(WEIGHTS_FILE);
        if (!Files.isRegularFile(weights)) throw new CheckpointFormatException(dir, WEIGHTS_FILE, "missing (a .bin adapter is never read: it would be a pickle)");
        Map<String, Pair> pairs = new LinkedHashMap<>();
        Set<Projection> targets = EnumSet.noneOf(Projection.class);
        try (SafeTensorsFile f = SafeTensorsFile.open(weights)) {
            // every name and shape checked before anything is uploaded; a failure after that frees what was uploaded
            record Found(int layer, Projection p, String aName, String bName, int rank) {
            }
            List<Found> found = new ArrayList<>();
            Set<String> used = new TreeSet<>();
            for (int l = 0; l < cfg.numLayers(); l++) {
                for (Projection p : Projection.values()) {
                    String aName = find(f, l, p, "lora_A"), bName = find(f, l, p, "lora_B");
                    if (aName == null && bName == null) continue;
                    if (aName == null || bName == null)
                        throw new CheckpointFormatException(weights, "tensor '" + (aName == null ? bName : aName) + "'", "has no matching " + (aName == null ? "lora_A" : "lora_B"));
                    int[] shape = p.shape(cfg);
                    TensorEntry ea = f.entry(aName), eb = f.entry(bName);
                    for (TensorEntry e : new TensorEntry[]{ea, eb})
                        if (e.engineType() == null || !e.engineType().isFloating())
                            throw new CheckpointFormatException(weights, "tensor '" + e.name() + "'", "dtype " + e.dtype() + " is not a floating type the engine reads");
                    if (ea.shape().length != 2 || eb.shape().length != 2 || ea.shape()[1] != shape[1] || eb.shape()[0] != shape[0] || ea.shape()[0] != eb.shape()[1])
                        throw new CheckpointFormatException(weights, "tensor '" + aName + "'", "shapes A" + java.util.Arrays.toString(ea.shape())
                                + " B" + java.util.Arrays.toString(eb.shape()) + " do not fit " + p.module() + " [" + shape[0] + ", " + shape[1] + "]");
                    found.add(new Found(l, p, aName, bName, (int) ea.shape()[0]));
                    used.add(aName);
                    used.add(bName);
                }
            }
            for (String n : f.names())
                if (!used.contains(n)) throw new CheckpointFormatException(weights, "tensor '" + n + "'", "is not a LoRA weight of this model");
            boolean perModuleRanks = c.hasNonNull("rank_pattern") && !c.get("rank_pattern").isEmpty();
            for (Found x : found) // PEFT builds every module at r unless rank_pattern says otherwise, and fails on another rank
                if (!perModuleRanks && x.rank() != rNode.asInt())
                    throw new CheckpointFormatException(weights, "tensor '" + x.aName() + "'", "has rank " + x.rank() + " where r is " + rNode.asInt()
                            + " and no rank_pattern names another");
            if (found.isEmpty()) throw new CheckpointFormatException(weights, "", "holds no LoRA weights");
            try (Allocations made = new Allocations()) {
                for (Found x : found) {
                    Parameter pa = made.add(new Parameter(peftName(x.layer(), x.p(), "lora_A"), Weights.upload(be, f, x.aName(), dtype)));
                    Parameter pb = made.add(new Parameter(peftName(x.layer(), x.p(), "lora_B"), Weights.upload(be, f, x.bName(), dtype)));
                    pairs.put(key(x.layer(), x.p()), new Pair(x.layer(), x.p(), pa, pb, dev.jsloth.api.ops.LoraLinear.scaling(alpha, x.rank(), rs)));
                    targets.add(x.p());
                }
                return made.handOver(new LoraAdapter(new LoraSettings(rNode.asInt(), alpha, rs, targets, dropout), pairs));
            }
        }
    }

    /** {@code init_lora_weights} values that leave the base weights as they are (the adapter alone holds what training learnt). */
    private static final Set<String> BASE_KEEPING_INITS = Set.of("true", "false", "gaussian", "eva");

    /**
     * adapter_config.json fields that would change what the adapter computes, which this engine does not implement: each
     * must be absent or its "off" value (null, false, empty), else the adapter is refused naming the field rather than
     * applied wrongly. {@code lora_bias}: a bias on B; {@code layer_replication}: base layers run more than once;
     * {@code alora_invocation_tokens}: the adapter only from given tokens on; the others are PEFT variants (QA-LoRA,
     * KaSA, VeLoRA, MonteCLoRA, BD-LoRA, Arrow routing, LoRA on parameters, trainable tokens).
     */
    private static final Set<String> MUST_BE_OFF = Set.of("lora_bias", "layer_replication", "alora_invocation_tokens", "use_qalora",
            "kasa_config", "velora_config", "monteclora_config", "use_bdlora", "arrow_config", "target_parameters", "trainable_token_indices");

    /** Fields read above, or that only describe the adapter (where it came from, how PEFT found its modules, options of inits). */
    private static final Set<String> UNDERSTOOD = Set.of("peft_type", "use_dora", "bias", "fan_in_fan_out", "modules_to_save", "alpha_pattern",
            "rank_pattern", "r", "lora_alpha", "use_rslora", "lora_dropout", "init_lora_weights", "target_modules", "exclude_modules",
            "layers_to_transform", "layers_pattern", "base_model_name_or_path", "revision", "task_type", "inference_mode", "peft_version",
            "auto_mapping", "megatron_config", "megatron_core", "ensure_weight_tying", "eva_config", "loftq_config", "corda_config",
            "lora_ga_config", "qalora_group_size");

    private static void checkFieldsThatChangeTheMaths(Path cfgFile, JsonNode c) throws CheckpointFormatException {
        JsonNode init = c.get("init_lora_weights");
        if (init != null && !init.isNull() && !BASE_KEEPING_INITS.contains(init.asText().toLowerCase(java.util.Locale.ROOT)))
            throw new CheckpointFormatException(cfgFile, "init_lora_weights", "'" + init.asText() + "' initialises by rewriting the base weights"
                    + " (PiSSA, OLoRA, LoftQ, CorDA and the like): this adapter only fits that rewritten base, which is not loaded here");
        for (var it = c.fields(); it.hasNext(); ) {
            var e = it.next();
            String name = e.getKey();
            boolean off = isOff(e.getValue());
            if (MUST_BE_OFF.contains(name) && !off)
                throw new CheckpointFormatException(cfgFile, name, "is " + e.getValue() + ": this PEFT feature changes what the adapter computes and is not supported");
            if (!MUST_BE_OFF.contains(name) && !UNDERSTOOD.contains(name) && !off)
                throw new CheckpointFormatException(cfgFile, name, "is " + e.getValue() + ": a field this reader does not know, refused rather than ignored"
                        + " (it may change what the adapter computes)");
        }
    }

    /** null, false, 0, "" or an empty list/object. */
    private static boolean isOff(JsonNode v) {
        return v == null || v.isNull() || (v.isBoolean() && !v.asBoolean()) || (v.isNumber() && v.asDouble() == 0)
                || ((v.isContainerNode() || v.isTextual()) && v.isEmpty());
    }

    private static String find(SafeTensorsFile f, int layer, Projection p, String which) {
        String base = peftName(layer, p, which);
        for (String cand : new String[]{base + ".weight", base + ".default.weight"}) if (f.contains(cand)) return cand;
        return null;
    }

    /** Writes {@code adapter_config.json} and {@code adapter_model.safetensors} (each atomically). */
    public void save(Path dir, String baseModel) throws IOException {
        Files.createDirectories(dir);
        SafeTensorsWriter w = new SafeTensorsWriter().metadata("format", "pt");
        try (Arena arena = Arena.ofConfined()) {
            for (Pair p : pairs.values()) {
                for (Parameter param : List.of(p.a(), p.b())) {
                    Tensor t = param.value();
                    double[] v = t.backend().download(t);
                    boolean f64 = t.dtype() == DType.F64;
                    MemorySegment seg = arena.allocate((long) v.length * (f64 ? 8 : 4));
                    for (int i = 0; i < v.length; i++) {
                        if (f64) seg.setAtIndex(java.lang.foreign.ValueLayout.JAVA_DOUBLE_UNALIGNED.withOrder(java.nio.ByteOrder.LITTLE_ENDIAN), i, v[i]);
                        else seg.setAtIndex(java.lang.foreign.ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(java.nio.ByteOrder.LITTLE_ENDIAN), i, (float) v[i]);
                    }
                    w.add(param.name() + ".weight", f64 ? "F64" : "F32", t.shape().dims(), seg);
                }
            }
            w.write(dir.resolve(WEIGHTS_FILE));
        }
        ObjectNode c = Json.MAPPER.createObjectNode();
        c.put("peft_type", "LORA");
        c.put("task_type", "CAUSAL_LM");
        c.put("base_model_name_or_path", baseModel);
        c.put("r", settings.rank());
        c.put("lora_alpha", settings.alpha());
        c.put("lora_dropout", settings.dropout());
        c.put("use_rslora", settings.rsLora());
        c.put("bias", "none");
        c.put("fan_in_fan_out", false);
        c.put("init_lora_weights", true);
        c.put("inference_mode", true);
        c.put("use_dora", false);
        c.putNull("modules_to_save");
        c.putNull("layers_to_transform");
        // modules at another rank than r (an adapter loaded with a rank_pattern): PEFT builds each at r unless named here
        ObjectNode ranks = c.putObject("rank_pattern");
        for (Pair p : pairs.values()) {
            int rank = p.a().value().shape().dims()[0];
            if (rank != settings.rank()) ranks.put(p.projection().path(p.layer()), rank);
        }
        c.putObject("alpha_pattern");
        ArrayNode t = c.putArray("target_modules");
        List<String> names = new ArrayList<>();
        for (Projection p : settings.targets()) names.add(p.module());
        Collections.sort(names);
        names.forEach(t::add);
        Json.write(dir.resolve(CONFIG_FILE), c);
    }

    @Override
    public void close() {
        if (buffer != null) buffer.close();
    }
}
