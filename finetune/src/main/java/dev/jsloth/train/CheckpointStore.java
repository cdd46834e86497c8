package dev.jsloth.train;

import com.fasterxml.jackson.databind.JsonNode;
import dev.jsloth.api.Backend;
import dev.jsloth.api.DType;
import dev.jsloth.api.Shape;
import dev.jsloth.api.Tensor;
import dev.jsloth.api.autograd.Parameter;
import dev.jsloth.io.AtomicFiles;
import dev.jsloth.io.CheckpointFormatException;
import dev.jsloth.io.Json;
import dev.jsloth.io.SafeTensorsFile;
import dev.jsloth.io.SafeTensorsWriter;
import dev.jsloth.io.TensorBytes;
import dev.jsloth.io.TensorEntry;
import dev.jsloth.model.LoraAdapter;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.stream.Stream;

/**
 * Training checkpoints {@code OUTPUT/checkpoint-STEP/}: the PEFT adapter, {@code optimizer.safetensors} (AdamW
 * moments) and {@code trainer_state.json}. A checkpoint is built in a hidden temporary directory, every file
 * fsynced, and renamed into place in one atomic step, so a crash at any moment leaves the previous checkpoints
 * complete; only complete directories ({@code checkpoint-N} holding {@code trainer_state.json}) are resumed
 * from. Older checkpoints beyond the keep limit are deleted after a new one lands, each first renamed to a hidden
 * name in one atomic step, so a crash during a deletion never leaves a partial {@code checkpoint-N} behind; hidden
 * leftovers of a killed run are removed by the next save.
 */
public final class CheckpointStore {
    static final String STATE = "trainer_state.json";
    static final String OPTIMIZER = "optimizer.safetensors";
    /** The state's object of {@link Trainer#recordSetting run settings}. */
    static final String RUN_SETTINGS = "run";
    private static final String PREFIX = "checkpoint-";
    /** Hidden directories: checkpoints being built ({@code .tmp-checkpoint-N-...}) or being deleted. */
    private static final String HIDDEN = ".tmp-";

    private final Path output;
    private final int keep;

    public CheckpointStore(Path output, int keep) {
        this.output = output;
        this.keep = keep;
    }

    public Path save(long step, LoraAdapter adapter, AdamW opt, JsonNode state, String baseModel) throws IOException {
        Files.createDirectories(output);
        removeHiddenLeftovers();
        Path tmp = AtomicFiles.createBuildDirectory(output, HIDDEN + PREFIX + step + "-");
        try {
            adapter.save(tmp, baseModel);
            SafeTensorsWriter w = new SafeTensorsWriter();
            try (Arena arena = Arena.ofConfined()) {
                for (Map.Entry<String, Tensor[]> e : opt.moments().entrySet()) {
                    for (int i = 0; i < 2; i++) {
                        Tensor t = e.getValue()[i];
                        String dt = t.dtype() == DType.F64 ? "F64" : "F32";
                        w.add(e.getKey() + (i == 0 ? ".exp_avg" : ".exp_avg_sq"), dt, t.shape().dims(),
                                TensorBytes.encode(dt, t.backend().download(t), arena));
                    }
                }
                w.write(tmp.resolve(OPTIMIZER));
            }
            Json.write(tmp.resolve(STATE), state); // written last: its presence marks a complete checkpoint
            Path target = output.resolve(PREFIX + step);
            if (Files.exists(target)) retire(target);
            Files.move(tmp, target, StandardCopyOption.ATOMIC_MOVE);
            AtomicFiles.syncDirectory(output);
            prune();
            return target;
        } finally {
            if (Files.exists(tmp)) deleteTree(tmp);
        }
    }

    /** The complete checkpoint with the highest step, if any. */
    public Optional<Path> latest() throws IOException {
        List<Path> all = complete();
        return all.isEmpty() ? Optional.empty() : Optional.of(all.getLast());
    }

    /**
     * The {@link Trainer#recordSetting run settings} of the latest complete checkpoint in {@code output}: empty where
     * there is no checkpoint; a map without a key where the checkpoint predates that setting.
     */
    public static Optional<Map<String, String>> latestRunSettings(Path output) throws IOException {
        Optional<Path> ck = new CheckpointStore(output, 0).latest();
        if (ck.isEmpty()) return Optional.empty();
        Path file = ck.get().resolve(STATE);
        JsonNode run = Json.read(file).get(RUN_SETTINGS);
        Map<String, String> out = new java.util.LinkedHashMap<>();
        if (run == null) return Optional.of(out);
        if (!run.isObject()) throw new CheckpointFormatException(file, RUN_SETTINGS, "must be an object, found " + run.getNodeType());
        for (Map.Entry<String, JsonNode> e : run.properties()) {
            if (!e.getValue().isTextual())
                throw new CheckpointFormatException(file, RUN_SETTINGS + "." + e.getKey(), "must be a string, found " + e.getValue().getNodeType());
            out.put(e.getKey(), e.getValue().asText());
        }
        return Optional.of(out);
    }

    /** Complete checkpoints, oldest first. */
    public List<Path> complete() throws IOException {
        if (!Files.isDirectory(output)) return List.of();
        List<Path> out = new ArrayList<>();
        try (Stream<Path> s = Files.list(output)) {
            for (Path p : (Iterable<Path>) s::iterator) {
                String n = p.getFileName().toString();
                if (n.startsWith(PREFIX) && n.substring(PREFIX.length()).chars().allMatch(Character::isDigit)
                        && !n.equals(PREFIX) && Files.isRegularFile(p.resolve(STATE))) out.add(p);
            }
        }
        out.sort(Comparator.comparingLong(p -> Long.parseLong(p.getFileName().toString().substring(PREFIX.length()))));
        return out;
    }

    private void prune() throws IOException {
        if (keep <= 0) return;
        List<Path> all = complete();
        for (int i = 0; i < all.size() - keep; i++) retire(all.get(i));
    }

    /** Deletes a checkpoint after renaming it to a hidden name (atomically: it is whole or gone, never partial). */
    private void retire(Path checkpoint) throws IOException {
        Path hidden = Files.createTempDirectory(output, HIDDEN + "retired-");
        Path moved = hidden.resolve(checkpoint.getFileName());
        Files.move(checkpoint, moved, StandardCopyOption.ATOMIC_MOVE);
        AtomicFiles.syncDirectory(output);
        deleteTree(hidden);
    }

    /** Hidden directories a killed run left (a checkpoint half built or half deleted). */
    private void removeHiddenLeftovers() throws IOException {
        try (Stream<Path> s = Files.list(output)) {
            for (Path p : s.filter(q -> q.getFileName().toString().startsWith(HIDDEN) && Files.isDirectory(q)).toList()) deleteTree(p);
        }
    }

    /** Loads adapter weights and optimizer moments of a checkpoint into existing tensors; returns its state. */
    public static JsonNode restore(Path ckpt, LoraAdapter adapter, AdamW opt) throws IOException {
        JsonNode state = Json.read(ckpt.resolve(STATE));
        try (SafeTensorsFile a = SafeTensorsFile.open(ckpt.resolve(LoraAdapter.WEIGHTS_FILE));
             SafeTensorsFile o = SafeTensorsFile.open(ckpt.resolve(OPTIMIZER))) {
            for (Parameter p : adapter.parameters()) {
                copyInto(a, p.name() + ".weight", p.value());
                Tensor[] m = opt.moments().get(p.name());
                copyInto(o, p.name() + ".exp_avg", m[0]);
                copyInto(o, p.name() + ".exp_avg_sq", m[1]);
            }
        }
        JsonNode step = state.get("step");
        if (step == null || !step.canConvertToLong() || step.asLong() < 0)
            throw new CheckpointFormatException(ckpt.resolve(STATE), "step", "missing or not a non-negative integer");
        opt.restoreStep(step.asLong());
        return state;
    }

    private static void copyInto(SafeTensorsFile f, String name, Tensor dst) throws IOException {
        TensorEntry e = f.entry(name);
        if (!e.hasShape(dst.shape().dims()) || !e.isFloating())
            throw new CheckpointFormatException(f.path(), "tensor '" + name + "'", e.dtype() + java.util.Arrays.toString(e.shape())
                    + " does not match the run's " + dst.shape() + " (different model or LoRA settings?)");
        Backend be = dst.backend();
        try (Tensor t = be.uploadRaw(e.engineType(), Shape.of(e.intShape()), f.bytes(name))) {
            be.kernels().copy(t, dst);
        }
    }

    static void deleteTree(Path p) throws IOException {
        if (!Files.exists(p)) return;
        try (Stream<Path> s = Files.walk(p)) {
            for (Path q : s.sorted(Comparator.reverseOrder()).toList()) Files.deleteIfExists(q);
        }
    }
}
