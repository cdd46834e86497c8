package dev.jsloth.model;

import dev.jsloth.api.Backend;
import dev.jsloth.api.DType;
import dev.jsloth.api.autograd.Parameter;
import dev.jsloth.api.spi.Backends;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Adapter save/load and merge round trips give the same logits; a fresh adapter starts equal to the base. */
class AdapterAndMergeTest {
    static Backend be;

    @BeforeAll
    static void start() {
        be = Backends.create("cpu");
    }

    @AfterAll
    static void stop() {
        be.close();
    }

    @Test
    void savedAdapterReloadsToIdenticalLogits(@TempDir Path tmp) throws IOException {
        try (Fixture fx = Fixture.open("tied-odd"); LlamaModel m = LlamaModel.load(fx.dir(), be, DType.F64)) {
            Batch b = Batch.of(fx.ints("input_ids"), fx.ints("labels"));
            double[] before;
            try (LoraAdapter a = m.loadAdapter(fx.dir().resolve("adapter"))) {
                before = m.logits(b);
                a.save(tmp, fx.dir().toString());
            }
            assertTrue(Files.isRegularFile(tmp.resolve(LoraAdapter.CONFIG_FILE)));
            try (LoraAdapter again = m.loadAdapter(tmp)) {
                assertArrayEquals(before, m.logits(b), 0.0);
                assertEquals(7, again.settings().targets().size());
            }
        }
    }

    @Test
    void mergedCheckpointEqualsBasePlusAdapter(@TempDir Path tmp) throws IOException {
        for (String name : Fixture.CASES) {
            Path out = tmp.resolve(name);
            try (Fixture fx = Fixture.open(name)) {
                Merge.merge(fx.dir(), fx.dir().resolve("adapter"), out, be);
                Batch b = Batch.of(fx.ints("input_ids"), fx.ints("labels"));
                double[] withAdapter;
                try (LlamaModel m = LlamaModel.load(fx.dir(), be, DType.F64); LoraAdapter a = m.loadAdapter(fx.dir().resolve("adapter"))) {
                    withAdapter = m.logits(b);
                }
                try (LlamaModel merged = LlamaModel.load(out, be, DType.F64)) {
                    double err = Fixture.relError(merged.logits(b), withAdapter);
                    // fp32 checkpoints: one float32 rounding of W'; bf16: one bf16 rounding (8 bits)
                    double bound = name.endsWith("bf16") ? 3e-2 : 1e-5;
                    System.out.printf("[merge] %s merged vs base+adapter logits rel err %.3e%n", name, err);
                    assertTrue(err < bound, name + ": " + err);
                }
                assertTrue(Files.isRegularFile(out.resolve("config.json")));
            }
        }
    }

    @Test
    void freshAdapterStartsAtTheBaseModelAndOnlyLoraGetsGradients() throws IOException {
        try (Fixture fx = Fixture.open("gqa-untied"); LlamaModel m = LlamaModel.load(fx.dir(), be, DType.F64)) {
            Batch b = Batch.of(fx.ints("input_ids"), fx.ints("labels"));
            double base = m.loss(b).meanLoss();
            try (LoraAdapter a = m.attachNewAdapter(new LoraSettings(4, 8, true, java.util.EnumSet.of(Projection.Q, Projection.V)), 7)) {
                assertEquals(base, m.loss(b).meanLoss(), 1e-12);
                assertEquals(2 * 2 * 2, a.parameters().size()); // 2 layers x 2 projections x (A, B)
                m.lossAndBackward(b, 1.0 / b.countedTokens(), true);
                for (Parameter p : a.parameters()) {
                    double norm = be.kernels().sumOfSquares(p.grad());
                    // B starts at zero, so dA = s * dYB^T X is zero; dB is not
                    if (p.name().endsWith("lora_B")) assertTrue(norm > 0, p.name());
                    else assertEquals(0.0, norm, 0.0, p.name());
                }
            }
        }
    }

    @Test
    void checkpointingDoesNotChangeGradients() throws IOException {
        try (Fixture fx = Fixture.open("gqa-untied"); LlamaModel m = LlamaModel.load(fx.dir(), be, DType.F64);
             LoraAdapter a = m.loadAdapter(fx.dir().resolve("adapter"))) {
            Batch b = Batch.of(fx.ints("input_ids"), fx.ints("labels"));
            m.lossAndBackward(b, 1.0 / b.countedTokens(), false);
            java.util.List<double[]> plain = new java.util.ArrayList<>();
            for (Parameter p : a.parameters()) {
                plain.add(be.download(p.grad()));
                p.zeroGrad();
            }
            m.lossAndBackward(b, 1.0 / b.countedTokens(), true);
            for (int i = 0; i < plain.size(); i++) assertArrayEquals(plain.get(i), be.download(a.parameters().get(i).grad()), 0.0);
        }
    }

    /**
     * Running out of device memory at any one allocation while loading an adapter, training on a batch (forward, loss,
     * backward) or generating leaves the device as it was: an application that catches the failure and retries (with
     * less) has lost nothing to it.
     */
    @Test
    void outOfMemoryAnywhereLeavesNothingAlive() throws IOException {
        for (DType compute : new DType[]{DType.F64, DType.BF16}) // BF16: the converted copies (compute pass, 16-bit products)
            outOfMemoryAnywhereLeavesNothingAlive(compute);
    }

    private void outOfMemoryAnywhereLeavesNothingAlive(DType compute) throws IOException {
        dev.jsloth.cpu.CpuBackend cpu = (dev.jsloth.cpu.CpuBackend) be;
        try (Fixture fx = Fixture.open("gqa-untied"); LlamaModel m = LlamaModel.load(fx.dir(), be, compute)) {
            Batch b = Batch.of(fx.ints("input_ids"), fx.ints("labels"));
            int[] prompt = fx.intList("gen_prompt");
            int load = sweep(cpu, "adapter load", () -> LoraAdapter.load(fx.dir().resolve("adapter"), m.config(), be, DType.F32).close());
            assertTrue(load >= 14, "adapter load: " + load + " allocations"); // A and B of seven projections at least
            try (LoraAdapter a = m.loadAdapter(fx.dir().resolve("adapter"))) {
                for (Parameter p : a.parameters()) p.grad(); // the gradients are the adapter's, allocated once
                for (boolean ckpt : new boolean[]{false, true}) {
                    int step = sweep(cpu, "training step", () -> m.lossAndBackward(b, 1.0 / b.countedTokens(), ckpt));
                    assertTrue(step > 50, "training step" + (ckpt ? ", checkpointed" : "") + ": " + step + " allocations");
                }
                int gen = sweep(cpu, "generation", () -> m.generate(prompt, GenerationOptions.greedy(3), null));
                assertTrue(gen > 20, "generation: " + gen + " allocations");
            }
        }
    }

    /**
     * Runs {@code work} once as it is (what it caches, such as the model's RoPE tables, is then in place), then with the
     * n-th allocation failing, n = 0, 1, ... until it succeeds; returns how many failed.
     */
    private static int sweep(dev.jsloth.cpu.CpuBackend cpu, String what, IoWork work) throws IOException {
        work.run();
        long live = be.memoryStats().liveTensors();
        for (int n = 0; ; n++) {
            cpu.failAllocationAfter(n);
            boolean failed = false;
            try {
                work.run();
            } catch (dev.jsloth.api.DeviceOutOfMemoryException e) {
                failed = true;
            } finally {
                cpu.failAllocationAfter(-1);
            }
            assertEquals(live, be.memoryStats().liveTensors(), what + ": allocation " + n + " failed");
            if (!failed) return n;
        }
    }

    private interface IoWork {
        void run() throws IOException;
    }

    /**
     * An adapter whose last tensor is stored as integers is rejected, naming the tensor and its dtype, before anything is
     * uploaded (it used to fail after every earlier pair was on the device, and leave them there).
     */
    @Test
    void adapterWithAnIntegerTensorIsAFormatErrorAndLeavesNothingAlive(@TempDir Path tmp) throws IOException {
        try (Fixture fx = Fixture.open("gqa-untied")) {
            Path src = fx.dir().resolve("adapter");
            Files.copy(src.resolve(LoraAdapter.CONFIG_FILE), tmp.resolve(LoraAdapter.CONFIG_FILE));
            String last;
            try (dev.jsloth.io.SafeTensorsFile f = dev.jsloth.io.SafeTensorsFile.open(src.resolve(LoraAdapter.WEIGHTS_FILE))) {
                dev.jsloth.io.SafeTensorsWriter w = new dev.jsloth.io.SafeTensorsWriter();
                last = f.names().stream().filter(n -> n.contains("layers.1.mlp.down_proj.lora_B")).findFirst().orElseThrow();
                for (String n : f.names()) {
                    dev.jsloth.io.TensorEntry e = f.entry(n);
                    String asInts = "I" + 8 * dev.jsloth.io.TensorEntry.elementSize(e.dtype()); // the same byte count
                    w.add(n, n.equals(last) ? asInts : e.dtype(), e.shape(), f.bytes(n));
                }
                w.write(tmp.resolve(LoraAdapter.WEIGHTS_FILE));
            }
            long live = be.memoryStats().liveTensors();
            var e = org.junit.jupiter.api.Assertions.assertThrows(dev.jsloth.io.CheckpointFormatException.class,
                    () -> LoraAdapter.load(tmp, LlamaConfig.read(fx.dir()), be, DType.F32));
            assertTrue(e.getMessage().contains(last) && e.getMessage().contains("dtype I"), e.getMessage());
            assertEquals(live, be.memoryStats().liveTensors());
        }
    }

    /**
     * adapter_config.json fields that change what PEFT computes are applied or refused, never ignored: an init that
     * rewrote the base (PiSSA), layer replication, an unknown field set to something; fan_in_fan_out (PEFT resets it for
     * Linear) and "off" values load; a tensor rank other than r without a rank_pattern is refused as PEFT refuses it.
     */
    @Test
    void adapterConfigFieldsThatChangeTheMathsAreRefusedByName(@TempDir Path tmp) throws IOException {
        try (Fixture fx = Fixture.open("gqa-untied")) {
            Path src = fx.dir().resolve("adapter");
            LlamaConfig cfg = LlamaConfig.read(fx.dir());
            String[][] refused = {
                    {"init_lora_weights", "\"pissa\"", "init_lora_weights"},
                    {"layer_replication", "[[0, 1], [0, 1]]", "layer_replication"},
                    {"alora_invocation_tokens", "[5, 6]", "alora_invocation_tokens"},
                    {"some_future_config", "{\"mode\": 2}", "some_future_config"},
                    {"r", "4", "rank 8 where r is 4"},
            };
            for (int i = 0; i < refused.length; i++) {
                Path dir = adapterWith(src, tmp.resolve("bad" + i), refused[i][0], refused[i][1]);
                var e = org.junit.jupiter.api.Assertions.assertThrows(dev.jsloth.io.CheckpointFormatException.class,
                        () -> LoraAdapter.load(dir, cfg, be, DType.F32).close());
                assertTrue(e.getMessage().contains(refused[i][2]), refused[i][0] + ": " + e.getMessage());
            }
            String[][] loaded = {{"fan_in_fan_out", "true"}, {"some_future_config", "null"}, {"init_lora_weights", "\"gaussian\""},
                    {"layer_replication", "null"}, {"use_qalora", "false"}};
            for (int i = 0; i < loaded.length; i++)
                try (LoraAdapter a = LoraAdapter.load(adapterWith(src, tmp.resolve("ok" + i), loaded[i][0], loaded[i][1]), cfg, be, DType.F32)) {
                    assertEquals(8, a.settings().rank());
                }
        }
    }

    /**
     * An adapter loaded with a rank_pattern (its modules at another rank than r) is saved with the ranks PEFT needs to
     * build it again: every module whose rank is not r named in rank_pattern (it was written empty, and PEFT would
     * then fail on the shapes).
     */
    @Test
    void aRankPatternSurvivesSaving(@TempDir Path tmp) throws IOException {
        try (Fixture fx = Fixture.open("gqa-untied")) {
            Path src = adapterWith(fx.dir().resolve("adapter"), tmp.resolve("r4"), "r", "4");
            Path dir = adapterWith(src, tmp.resolve("patterned"), "rank_pattern", "{\"proj\": 8}");
            LlamaConfig cfg = LlamaConfig.read(fx.dir());
            long params;
            try (LoraAdapter a = LoraAdapter.load(dir, cfg, be, DType.F32)) {
                assertEquals(4, a.settings().rank());
                params = a.parameterCount();
                a.save(tmp.resolve("saved"), "base");
            }
            var saved = dev.jsloth.io.Json.read(tmp.resolve("saved").resolve(LoraAdapter.CONFIG_FILE));
            assertEquals(4, saved.get("r").asInt());
            var pattern = saved.get("rank_pattern");
            assertEquals(cfg.numLayers() * 7, pattern.size(), pattern.toString());
            pattern.forEach(v -> assertEquals(8, v.asInt()));
            assertEquals(8, pattern.get("model.layers.0.self_attn.q_proj").asInt());
            try (LoraAdapter again = LoraAdapter.load(tmp.resolve("saved"), cfg, be, DType.F32)) {
                assertEquals(params, again.parameterCount());
            }
        }
    }

    /**
     * attach checks the adapter against the model at once: pairs for layers the model does not have, shapes of another
     * intermediate size, tensors of another backend are refused by name (they ran silently, or failed at the next pass).
     */
    @Test
    void attachRefusesAnAdapterOfAnotherModel() throws IOException {
        try (Fixture fx = Fixture.open("gqa-untied"); LlamaModel m = LlamaModel.load(fx.dir(), be, DType.F64)) {
            LlamaConfig cfg = m.config();
            var json = (com.fasterxml.jackson.databind.node.ObjectNode) dev.jsloth.io.Json.read(fx.dir().resolve("config.json"));
            LlamaConfig deeper = LlamaConfig.parse(fx.dir().resolve("config.json"), json.deepCopy().put("num_hidden_layers", cfg.numLayers() + 1));
            LlamaConfig wider = LlamaConfig.parse(fx.dir().resolve("config.json"), json.deepCopy().put("intermediate_size", cfg.intermediateSize() + 8));
            LoraSettings s = LoraSettings.allProjections(4, 8);
            try (LoraAdapter a = LoraAdapter.initialise(deeper, s, be, DType.F64, 1)) {
                var e = org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class, () -> m.attach(a));
                assertTrue(e.getMessage().contains("model.layers." + cfg.numLayers() + ".") && e.getMessage().contains("layers"), e.getMessage());
            }
            try (LoraAdapter a = LoraAdapter.initialise(wider, s, be, DType.F64, 1)) {
                var e = org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class, () -> m.attach(a));
                assertTrue(e.getMessage().contains("do not fit the weight"), e.getMessage());
            }
            try (dev.jsloth.api.Backend other = dev.jsloth.api.spi.Backends.create("cpu"); LoraAdapter a = LoraAdapter.initialise(cfg, s, other, DType.F64, 1)) {
                var e = org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class, () -> m.attach(a));
                assertTrue(e.getMessage().contains("another backend"), e.getMessage());
            }
            try (LoraAdapter a = LoraAdapter.initialise(cfg, s, be, DType.F64, 1)) {
                m.attach(a); // its own: fine
                m.attach(null);
            }
        }
    }

    /** A copy of an adapter directory with one field of its adapter_config.json set to {@code json}. */
    private static Path adapterWith(Path src, Path dst, String field, String json) throws IOException {
        Files.createDirectories(dst);
        Files.copy(src.resolve(LoraAdapter.WEIGHTS_FILE), dst.resolve(LoraAdapter.WEIGHTS_FILE));
        var c = (com.fasterxml.jackson.databind.node.ObjectNode) dev.jsloth.io.Json.read(src.resolve(LoraAdapter.CONFIG_FILE));
        c.set(field, dev.jsloth.io.Json.MAPPER.readTree(json));
        dev.jsloth.io.Json.write(dst.resolve(LoraAdapter.CONFIG_FILE), c);
        return dst;
    }

    /**
     * Evaluation (a loss with no backward) holds one layer's activations at a time, not every layer's: its peak above
     * the weights is well under a training step's (which keeps every layer's for the backward), and nothing stays
     * alive after it.
     */
    @Test
    void evaluationKeepsNoActivations() throws IOException {
        try (Fixture fx = Fixture.open("tied-odd"); LlamaModel m = LlamaModel.load(fx.dir(), be, DType.F64);
             LoraAdapter a = m.loadAdapter(fx.dir().resolve("adapter"))) {
            // a longer batch than the fixture's, so that activations outweigh the LM head's chunks
            int seq = 96, rows = 4;
            int[] ids = new int[rows * seq];
            java.util.SplittableRandom r = new java.util.SplittableRandom(3);
            for (int i = 0; i < ids.length; i++) ids[i] = 3 + r.nextInt(m.config().vocabSize() - 3);
            Batch b = new Batch(rows, seq, ids, ids.clone(), null);
            m.loss(b); // first use: rope tables and the like
            long base = be.memoryStats().liveBytes(), live = be.memoryStats().liveTensors();
            be.resetPeak();
            m.loss(b);
            long eval = be.memoryStats().peakBytes() - base;
            assertEquals(live, be.memoryStats().liveTensors(), "nothing left alive by the evaluation");
            be.resetPeak();
            m.lossAndBackward(b, 1.0 / b.countedTokens(), false);
            long train = be.memoryStats().peakBytes() - base;
            System.out.printf("[memory] eval peak %d bytes above the weights, a no-GC training step %d%n", eval, train);
            assertTrue(eval < train / 2, "eval " + eval + " against training " + train);
        }
    }

    /** Fuzzer finding (adapter iteration 742): a negative lora_alpha escaped as IllegalArgumentException. */
    @Test
    void adapterConfigWithNegativeAlphaIsAFormatError(@TempDir Path tmp) throws IOException {
        try (Fixture fx = Fixture.open("gqa-untied")) {
            Files.copy(fx.dir().resolve("adapter/adapter_model.safetensors"), tmp.resolve(LoraAdapter.WEIGHTS_FILE));
            Files.writeString(tmp.resolve(LoraAdapter.CONFIG_FILE), "{\"peft_type\": \"LORA\", \"r\": 8, \"lora_alpha\": -1}");
            var e = org.junit.jupiter.api.Assertions.assertThrows(dev.jsloth.io.CheckpointFormatException.class,
                    () -> LoraAdapter.load(tmp, LlamaConfig.read(fx.dir()), be, DType.F32));
            assertTrue(e.getMessage().contains("lora_alpha"), e.getMessage());
        }
    }
}
