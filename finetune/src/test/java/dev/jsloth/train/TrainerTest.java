package dev.jsloth.train;

import dev.jsloth.api.Backend;
import dev.jsloth.api.DType;
import dev.jsloth.api.autograd.Parameter;
import dev.jsloth.api.spi.Backends;
import dev.jsloth.data.Example;
import dev.jsloth.model.Batch;
import dev.jsloth.model.LlamaModel;
import dev.jsloth.model.LoraAdapter;
import dev.jsloth.model.LoraSettings;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.net.URISyntaxException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Gradient accumulation, packing, resume and non-finite handling of the trainer, on a fixture model in F64. */
class TrainerTest {
    static Backend be;
    static Path modelDir;

    @BeforeAll
    static void start() throws URISyntaxException {
        be = Backends.create("cpu");
        modelDir = Path.of(TrainerTest.class.getResource("/hf/gqa-untied/config.json").toURI()).getParent();
    }

    @AfterAll
    static void stop() {
        be.close();
    }

    static List<Example> examples(int n, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        List<Example> out = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            int len = 5 + r.nextInt(12), prompt = 1 + r.nextInt(3);
            int[] ids = new int[len], labels = new int[len];
            for (int t = 0; t < len; t++) {
                ids[t] = 3 + r.nextInt(250);
                labels[t] = t < prompt ? -100 : ids[t];
            }
            out.add(new Example(ids, labels));
        }
        return out;
    }

    static TrainingConfig config(int batch, int accum, int steps, boolean packing) {
        return TrainingConfig.defaults().withSteps(1, steps).withBatch(batch, accum, 64, packing)
                .withOptimizer(1e-3, 0.01, TrainingConfig.Schedule.LINEAR, 1, 1.0).withSchedule(0, 2, 0, 1).withRun(true, 7, false);
    }

    static List<double[]> train(TrainingConfig cfg, List<Example> data, Path out) throws Exception {
        return train(cfg, data, out, LoraSettings.allProjections(4, 8));
    }

    static List<double[]> train(TrainingConfig cfg, List<Example> data, Path out, LoraSettings settings) throws Exception {
        try (LlamaModel m = LlamaModel.load(modelDir, be, DType.F64); LoraAdapter a = m.attachNewAdapter(settings, 11)) {
            // non-zero B so that every parameter gets a gradient from the first step
            for (Parameter p : a.parameters()) if (p.name().endsWith("lora_B")) be.kernels().fill(p.value(), 0.01);
            new Trainer(m, data, List.of(), cfg, out, 0).run(false);
            List<double[]> params = new ArrayList<>();
            for (Parameter p : a.parameters()) params.add(be.download(p.value()));
            return params;
        }
    }

    /** Batch 4 with no accumulation equals batch 2 x 2 and batch 1 x 4: the loss is token-weighted over the whole step. */
    @Test
    void gradientAccumulationEqualsOneLargeBatch(@TempDir Path tmp) throws Exception {
        List<Example> data = examples(8, 1);
        List<double[]> big = train(config(4, 1, 2, false), data, tmp.resolve("a"));
        List<double[]> accum2 = train(config(2, 2, 2, false), data, tmp.resolve("b"));
        List<double[]> accum4 = train(config(1, 4, 2, false), data, tmp.resolve("c"));
        for (int i = 0; i < big.size(); i++) {
            assertArrayEquals(big.get(i), accum2.get(i), 1e-12, "param " + i + " (2x2)");
            assertArrayEquals(big.get(i), accum4.get(i), 1e-12, "param " + i + " (1x4)");
        }
    }

    /** A packed row's loss equals the sum of its examples' losses: attention stays inside each, positions restart. */
    @Test
    void packedSequencesAreIndependent() throws Exception {
        List<Example> data = examples(4, 2);
        try (LlamaModel m = LlamaModel.load(modelDir, be, DType.F64)) {
            double separate = 0;
            long tokens = 0;
            for (Example e : data) {
                int[] labels = e.labels().clone();
                LlamaModel.LossResult r = m.loss(new Batch(1, e.length(), e.inputIds(), labels, null));
                separate += r.lossSum();
                tokens += r.tokens();
            }
            Batcher b = new Batcher(data, 1, 64, true, 0, 3);
            double packed = 0;
            long packedTokens = 0;
            for (Batcher.MicroBatch mb : b.epoch(0)) {
                assertTrue(mb.batch().segments() != null);
                LlamaModel.LossResult r = m.loss(mb.batch());
                packed += r.lossSum();
                packedTokens += r.tokens();
            }
            assertEquals(tokens, packedTokens);
            assertEquals(separate, packed, 1e-9 * Math.abs(separate));
        }
    }

    /** Stop after a checkpoint, resume: the loss curve and the final adapter equal an uninterrupted run exactly. */
    @Test
    void resumeReproducesTheUninterruptedRun(@TempDir Path tmp) throws Exception {
        resumeReproduces(tmp, LoraSettings.allProjections(4, 8));
    }

    /**
     * LoRA dropout (p = 0.2, PEFT's lora_dropout): the run differs from one without dropout, its adapter says
     * lora_dropout 0.2, and stopped and resumed it equals its uninterrupted self (each step's masks come from the run's
     * seed and the step).
     */
    @Test
    void loraDropoutTrainsAndResumesExactly(@TempDir Path tmp) throws Exception {
        LoraSettings dropout = new LoraSettings(4, 8, false, java.util.EnumSet.allOf(dev.jsloth.model.Projection.class), 0.2);
        resumeReproduces(tmp, dropout);
        List<Example> data = examples(12, 4);
        TrainingConfig cfg = config(2, 1, 3, false);
        List<double[]> with = train(cfg, data, tmp.resolve("with"), dropout);
        List<double[]> without = train(cfg, data, tmp.resolve("without"));
        for (int i = 0; i < with.size(); i++)
            assertTrue(!java.util.Arrays.equals(with.get(i), without.get(i)), "dropout changes parameter " + i);
        var config = dev.jsloth.io.Json.MAPPER.readTree(tmp.resolve("with").resolve("adapter").resolve("adapter_config.json").toFile());
        assertEquals(0.2, config.get("lora_dropout").asDouble());
        try (LlamaModel m = LlamaModel.load(modelDir, be, DType.F64);
             LoraAdapter a = LoraAdapter.load(tmp.resolve("with").resolve("adapter"), m.config(), be, DType.F64)) {
            assertEquals(0.2, a.settings().dropout());
        }
        // another alpha or other targets would rescale or drop what the checkpoint learnt: refused, naming the value
        try (LlamaModel m = LlamaModel.load(modelDir, be, DType.F64);
             LoraAdapter a = m.attachNewAdapter(new LoraSettings(4, 16, false, java.util.EnumSet.allOf(dev.jsloth.model.Projection.class), 0.2), 11)) {
            TrainingException e = assertThrows(TrainingException.class,
                    () -> new Trainer(m, data, List.of(), config(2, 1, 6, false).withSchedule(2, 2, 0, 1), tmp.resolve("resumed"), 0).run(true));
            assertTrue(e.getMessage().contains("--lora-alpha 8"), e.getMessage());
        }
        try (LlamaModel m = LlamaModel.load(modelDir, be, DType.F64);
             LoraAdapter a = m.attachNewAdapter(new LoraSettings(4, 8, false, java.util.EnumSet.of(dev.jsloth.model.Projection.parse("q_proj")), 0.2), 11)) {
            TrainingException e = assertThrows(TrainingException.class,
                    () -> new Trainer(m, data, List.of(), config(2, 1, 6, false).withSchedule(2, 2, 0, 1), tmp.resolve("resumed"), 0).run(true));
            assertTrue(e.getMessage().contains("--targets q_proj,k_proj"), e.getMessage());
        }
        // resuming a dropout run without its dropout would follow other maths: refused, naming the value
        try (LlamaModel m = LlamaModel.load(modelDir, be, DType.F64); LoraAdapter a = m.attachNewAdapter(LoraSettings.allProjections(4, 8), 11)) {
            TrainingException e = assertThrows(TrainingException.class,
                    () -> new Trainer(m, data, List.of(), config(2, 1, 6, false).withSchedule(2, 2, 0, 1), tmp.resolve("resumed"), 0).run(true));
            assertTrue(e.getMessage().contains("--lora-dropout 0.2"), e.getMessage());
        }
    }

    private void resumeReproduces(Path tmp, LoraSettings settings) throws Exception {
        List<Example> data = examples(12, 4);
        TrainingConfig cfg = config(2, 1, 6, false).withSchedule(2, 2, 0, 1);
        List<double[]> straight = train(cfg, data, tmp.resolve("straight"), settings);
        Path out = tmp.resolve("resumed");
        try (LlamaModel m = LlamaModel.load(modelDir, be, DType.F64); LoraAdapter a = m.attachNewAdapter(settings, 11)) {
            for (Parameter p : a.parameters()) if (p.name().endsWith("lora_B")) be.kernels().fill(p.value(), 0.01);
            Trainer t = new Trainer(m, data, List.of(), cfg, out, 0).listen(new TrainingListener() {
                @Override
                public void onStep(StepMetrics s) {
                    if (s.step() == 5) throw new IllegalStateException("simulated crash after step 5");
                }
            });
            assertThrows(IllegalStateException.class, () -> t.run(false));
        }
        assertTrue(Files.isRegularFile(out.resolve("checkpoint-4").resolve("trainer_state.json")));
        List<double[]> resumed;
        try (LlamaModel m = LlamaModel.load(modelDir, be, DType.F64); LoraAdapter a = m.attachNewAdapter(settings, 99)) {
            new Trainer(m, data, List.of(), cfg, out, 0).run(true);
            resumed = new ArrayList<>();
            for (Parameter p : a.parameters()) resumed.add(be.download(p.value()));
        }
        for (int i = 0; i < straight.size(); i++) assertArrayEquals(straight.get(i), resumed.get(i), 0.0, "param " + i);
        assertEquals(losses(tmp.resolve("straight")), losses(out));
    }

    static List<String> losses(Path out) throws Exception {
        List<String> l = new ArrayList<>();
        for (String line : Files.readAllLines(out.resolve("metrics.jsonl"), StandardCharsets.UTF_8)) {
            var n = dev.jsloth.io.Json.MAPPER.readTree(line);
            if (n.has("loss")) l.add(n.get("step").asText() + ":" + n.get("loss").asText() + ":" + n.get("grad_norm").asText());
        }
        return l;
    }

    /** A NaN in the weights stops the run with a clear message; the last checkpoint stays complete and loadable. */
    @Test
    void nonFiniteLossStopsAndKeepsTheLastGoodCheckpoint(@TempDir Path tmp) throws Exception {
        List<Example> data = examples(8, 5);
        TrainingConfig cfg = config(2, 1, 6, false).withSchedule(1, 3, 0, 1);
        try (LlamaModel m = LlamaModel.load(modelDir, be, DType.F64); LoraAdapter a = m.attachNewAdapter(LoraSettings.allProjections(4, 8), 11)) {
            Trainer t = new Trainer(m, data, List.of(), cfg, tmp, 0).listen(new TrainingListener() {
                @Override
                public void onCheckpoint(long step, Path dir) {
                    if (step == 2) be.kernels().fill(a.parameters().getFirst().value(), Double.NaN);
                }
            });
            TrainingException e = assertThrows(TrainingException.class, () -> t.run(false));
            assertTrue(e.getMessage().contains("step 3") && e.getMessage().contains("non-finite") && e.getMessage().contains("checkpoint-2"), e.getMessage());
        }
        try (LlamaModel m = LlamaModel.load(modelDir, be, DType.F64); LoraAdapter ok = m.loadAdapter(tmp.resolve("checkpoint-2"))) {
            for (Parameter p : ok.parameters()) assertTrue(Double.isFinite(be.kernels().sumOfSquares(p.value())));
        }
    }

    /**
     * A listener's StopTraining ends the run after that step and keeps what it trained: the adapter (equal to the
     * model's parameters at that step), the summary and the metrics of the steps run; the final evaluation is at the
     * stopping step. Another exception from a listener still aborts.
     */
    @Test
    void aListenerStopsTheRunEarlyAndTheAdapterIsKept(@TempDir Path tmp) throws Exception {
        List<Example> data = examples(12, 7);
        TrainingConfig cfg = config(2, 1, 5, false);
        try (LlamaModel m = LlamaModel.load(modelDir, be, DType.F64); LoraAdapter a = m.attachNewAdapter(LoraSettings.allProjections(4, 8), 11)) {
            List<Long> evals = new ArrayList<>();
            List<String> warned = new ArrayList<>();
            TrainingSummary s = new Trainer(m, data, examples(3, 9), cfg, tmp, 0).warnings(warned::add).listen(new TrainingListener() {
                @Override
                public void onStep(StepMetrics sm) {
                    if (sm.step() == 2) throw new StopTraining("loss is good enough");
                }

                @Override
                public void onEval(long step, double loss) {
                    evals.add(step);
                }
            }).run(false);
            assertEquals(2, s.steps());
            assertEquals(List.of("jsloth: stopping after step 2 of 5: loss is good enough"), warned);
            assertEquals(List.of(2L), evals, "the final evaluation at the stopping step");
            assertEquals(2, Files.readAllLines(tmp.resolve("metrics.jsonl")).stream().filter(l -> l.contains("\"loss\"")).count());
            assertTrue(Files.isRegularFile(tmp.resolve("summary.json")));
            try (LoraAdapter saved = m.loadAdapter(tmp.resolve("adapter"))) {
                for (int i = 0; i < a.parameters().size(); i++)
                    assertArrayEquals(be.download(a.parameters().get(i).value()), be.download(saved.parameters().get(i).value()), 0.0);
            }
        }
        try (LlamaModel m = LlamaModel.load(modelDir, be, DType.F64); LoraAdapter a = m.attachNewAdapter(LoraSettings.allProjections(4, 8), 11)) {
            Trainer t = new Trainer(m, data, List.of(), cfg, tmp.resolve("aborted"), 0).listen(new TrainingListener() {
                @Override
                public void onStep(StepMetrics sm) {
                    throw new IllegalStateException("listener failed");
                }
            });
            assertEquals("listener failed", assertThrows(IllegalStateException.class, () -> t.run(false)).getMessage());
            assertFalse(Files.exists(tmp.resolve("aborted").resolve("adapter")));
        }
    }

    @Test
    void skipNonFiniteSkipsTheStepInstead(@TempDir Path tmp) throws Exception {
        List<Example> data = examples(8, 6);
        TrainingConfig cfg = config(2, 1, 3, false).withRun(true, 7, true);
        try (LlamaModel m = LlamaModel.load(modelDir, be, DType.F64); LoraAdapter a = m.attachNewAdapter(LoraSettings.allProjections(4, 8), 11)) {
            be.kernels().fill(a.parameters().getFirst().value(), Double.POSITIVE_INFINITY);
            TrainingSummary s = new Trainer(m, data, List.of(), cfg, tmp, 0).run(false);
            assertEquals(3, s.steps());
            assertTrue(Files.readString(tmp.resolve("metrics.jsonl")).contains("\"skipped\":true"));
            assertTrue(s.steadyTokensPerSecond() > 0, "steady rate " + s.steadyTokensPerSecond());
        }
    }

    /** The steady rate leaves out the first fifth of the steps (at least the first), and needs three steps. */
    @Test
    void steadyRateLeavesOutTheFirstSteps() {
        // {tokens, seconds} after each step: steps 1 and 2 slow (compilation), step 3 half speed, then 0.1 s a step
        List<double[]> p = new java.util.ArrayList<>();
        p.add(new double[]{100, 5.0});
        p.add(new double[]{200, 6.0});
        p.add(new double[]{300, 6.2});
        for (int i = 4; i <= 10; i++) p.add(new double[]{100 * i, 6.2 + 0.1 * (i - 3)});
        // ten steps: from after step 2 (a fifth) on: 800 tokens in 0.9 s; after step 1 it would be 900 / 1.9, after
        // step 3 700 / 0.7
        assertEquals(800 / 0.9, Trainer.steadyRate(p), 1e-9);
        assertEquals(200 / 1.2, Trainer.steadyRate(p.subList(0, 3)), 1e-9); // three steps: from after step 1
        assertEquals(400 / 1.4, Trainer.steadyRate(p.subList(0, 5)), 1e-9); // five: still from after step 1
        assertTrue(Double.isNaN(Trainer.steadyRate(p.subList(0, 2))));
        List<double[]> stalled = List.of(new double[]{100, 1.0}, new double[]{200, 1.0}, new double[]{300, 1.0});
        assertTrue(Double.isNaN(Trainer.steadyRate(stalled)), "no time passed: no rate");
    }

    /** Learning rates as transformers' schedulers give them (lr 1, warmup 2, 10 steps); constant takes no warmup. */
    @Test
    void learningRateSchedulesAsTransformersGivesThem() {
        TrainingConfig base = TrainingConfig.defaults();
        java.util.function.Function<TrainingConfig.Schedule, TrainingConfig> with = sch -> base.withOptimizer(1.0, 0, sch, 2, 1.0);
        TrainingConfig lin = with.apply(TrainingConfig.Schedule.LINEAR), cos = with.apply(TrainingConfig.Schedule.COSINE);
        assertEquals(0.0, lin.learningRate(1, 10));
        assertEquals(0.5, lin.learningRate(2, 10));
        assertEquals(1.0, lin.learningRate(3, 10));
        assertEquals(1.0 / 8, lin.learningRate(10, 10), 1e-15);
        assertEquals(0.5 * (1 + Math.cos(Math.PI * 3 / 8)), cos.learningRate(6, 10), 1e-15);
        assertEquals(0.5, with.apply(TrainingConfig.Schedule.CONSTANT_WITH_WARMUP).learningRate(2, 10));
        assertEquals(1.0, with.apply(TrainingConfig.Schedule.CONSTANT_WITH_WARMUP).learningRate(3, 10));
        assertEquals(1.0, with.apply(TrainingConfig.Schedule.CONSTANT).learningRate(1, 10), "constant: no warmup");
        // below 1, a ratio of the run (transformers 5's warmup_steps, 4's warmup_ratio): ceil(10 x 0.25) = 3 steps
        TrainingConfig ratio = base.withOptimizer(1.0, 0, TrainingConfig.Schedule.LINEAR, 0.25, 1.0);
        assertEquals(3, ratio.warmupSteps(10));
        assertEquals(1.0 / 3, ratio.learningRate(2, 10), 1e-15);
        assertEquals(1.0, ratio.learningRate(4, 10));
        assertThrows(IllegalArgumentException.class, () -> base.withOptimizer(1.0, 0, TrainingConfig.Schedule.LINEAR, 2.5, 1.0));
        assertEquals(TrainingConfig.Schedule.CONSTANT_WITH_WARMUP, TrainingConfig.Schedule.parse("constant_with_warmup"));
        assertTrue(assertThrows(IllegalArgumentException.class, () -> TrainingConfig.Schedule.parse("polynomial")).getMessage().contains("'polynomial'"));
    }

    /**
     * Packed rows are made once: every epoch has as many micro-batches as the first and holds every example once. Lengths
     * {3, 3, 1, 1} at seqLen 4 pack into 2 or 3 rows depending on their order, which used to change from epoch to epoch.
     */
    @Test
    void packedEpochsKeepTheirRows() {
        List<Example> data = new ArrayList<>();
        int[] lengths = {3, 3, 1, 1, 2, 3, 1, 2, 2, 1, 3, 1};
        for (int i = 0; i < lengths.length; i++) {
            int[] ids = new int[lengths[i]];
            java.util.Arrays.fill(ids, 10 + i);
            data.add(new Example(ids, ids.clone()));
        }
        Batcher b = new Batcher(data, 2, 4, true, 0, 5);
        int first = b.epoch(0).size(), firstRows = b.epoch(0).stream().mapToInt(mb -> mb.batch().batch()).sum();
        for (int e = 0; e < 8; e++) {
            List<Batcher.MicroBatch> mbs = b.epoch(e);
            assertEquals(first, mbs.size(), "epoch " + e);
            assertEquals(firstRows, mbs.stream().mapToInt(mb -> mb.batch().batch()).sum(), "rows of epoch " + e);
            int[] seen = new int[lengths.length];
            for (Batcher.MicroBatch mb : mbs)
                for (int id : mb.batch().inputIds()) if (id >= 10) seen[id - 10]++;
            for (int i = 0; i < lengths.length; i++) assertEquals(lengths[i], seen[i], "example " + i + " in epoch " + e);
        }
    }

    /** With --eval-every dividing the step count, the last step is evaluated once, not again as the final evaluation. */
    @Test
    void theLastStepIsEvaluatedOnce(@TempDir Path tmp) throws Exception {
        try (LlamaModel m = LlamaModel.load(modelDir, be, DType.F64); LoraAdapter a = m.attachNewAdapter(LoraSettings.allProjections(4, 8), 11)) {
            TrainingSummary s = new Trainer(m, examples(8, 4), examples(3, 9), config(2, 1, 4, false).withSchedule(0, 2, 2, 1), tmp, 0).run(false);
            long evals = Files.readAllLines(tmp.resolve("metrics.jsonl")).stream().filter(l -> l.contains("eval_loss")).count();
            assertEquals(2, evals, "evaluations at steps 2 and 4");
            assertTrue(s.evalLoss() != null && Double.isFinite(s.evalLoss()), "the final evaluation is the step-4 one");
        }
    }
}
