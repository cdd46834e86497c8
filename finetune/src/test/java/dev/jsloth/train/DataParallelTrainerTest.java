package dev.jsloth.train;

import dev.jsloth.api.Backend;
import dev.jsloth.api.DType;
import dev.jsloth.api.autograd.Parameter;
import dev.jsloth.api.distributed.Communicator;
import dev.jsloth.api.distributed.ProcessGroup;
import dev.jsloth.api.spi.Backends;
import dev.jsloth.data.Example;
import dev.jsloth.model.LlamaModel;
import dev.jsloth.model.LoraAdapter;
import dev.jsloth.model.LoraSettings;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Data parallelism on the CPU backend, ranks as threads with their own backend and model, gradients summed by the
 * TCP communicator (the NCCL path runs the same trainer on the GPU machine): W ranks of batch b train exactly like
 * one process of batch W*b, only rank 0 writes, and a run resumes with another number of ranks.
 */
class DataParallelTrainerTest {
    static final double TOLERANCE = 1e-11; // F64: the two runs differ only in how the GEMMs split their sums

    @org.junit.jupiter.api.BeforeAll
    static void start() throws Exception {
        TrainerTest.start(); // its fixture model and CPU backend
    }

    @org.junit.jupiter.api.AfterAll
    static void stop() {
        TrainerTest.stop();
    }

    static int freePort() throws Exception {
        try (ServerSocket s = new ServerSocket(0)) {
            return s.getLocalPort();
        }
    }

    /** Trains with {@code world} ranks; returns rank 0's final LoRA parameters (after checking the others hold the same). */
    static List<double[]> trainParallel(int world, TrainingConfig cfg, List<Example> data, Path out, boolean resume) throws Exception {
        int port = freePort();
        ExecutorService ex = Executors.newFixedThreadPool(world);
        try {
            List<Future<List<double[]>>> ranks = new ArrayList<>();
            for (int r = 0; r < world; r++) {
                final int rank = r;
                ranks.add(ex.submit(() -> {
                    try (Backend be = Backends.create("cpu"); LlamaModel m = LlamaModel.load(TrainerTest.modelDir, be, DType.F64);
                         LoraAdapter a = m.attachNewAdapter(LoraSettings.allProjections(4, 8), 11);
                         Communicator c = be.communicator(new ProcessGroup(rank, world, rank, "127.0.0.1", port))) {
                        for (Parameter p : a.parameters()) if (p.name().endsWith("lora_B")) be.kernels().fill(p.value(), 0.01);
                        new Trainer(m, data, List.of(), cfg, out, 0).distributed(c).run(resume);
                        List<double[]> params = new ArrayList<>();
                        for (Parameter p : a.parameters()) params.add(be.download(p.value()));
                        return params;
                    }
                }));
            }
            List<double[]> root = ranks.getFirst().get(300, TimeUnit.SECONDS);
            for (int r = 1; r < world; r++) {
                List<double[]> other = ranks.get(r).get(300, TimeUnit.SECONDS);
                for (int i = 0; i < root.size(); i++) assertArrayEquals(root.get(i), other.get(i), 0.0, "rank " + r + " param " + i);
            }
            return root;
        } finally {
            ex.shutdownNow();
        }
    }

    static List<double[]> losses(Path out) throws Exception {
        List<double[]> l = new ArrayList<>();
        for (String line : Files.readAllLines(out.resolve("metrics.jsonl"), StandardCharsets.UTF_8)) {
            var n = dev.jsloth.io.Json.MAPPER.readTree(line);
            if (n.has("loss")) l.add(new double[]{n.get("step").asDouble(), n.get("loss").asDouble(), n.get("grad_norm").asDouble()});
        }
        return l;
    }

    static void assertClose(List<double[]> expected, List<double[]> actual, String what) {
        assertEquals(expected.size(), actual.size(), what + ": count");
        for (int i = 0; i < expected.size(); i++) {
            double[] e = expected.get(i), a = actual.get(i);
            for (int j = 0; j < e.length; j++)
                assertEquals(e[j], a[j], TOLERANCE * Math.max(1, Math.abs(e[j])), what + " " + i + "[" + j + "]");
        }
    }

    @Test
    void twoRanksOfBatchOneTrainLikeOneProcessOfBatchTwo(@TempDir Path tmp) throws Exception {
        List<Example> data = TrainerTest.examples(12, 21);
        TrainingConfig one = TrainerTest.config(2, 2, 4, false);
        List<double[]> single = TrainerTest.train(one, data, tmp.resolve("one"));
        List<double[]> parallel = trainParallel(2, TrainerTest.config(1, 2, 4, false), data, tmp.resolve("two"), false);
        assertClose(single, parallel, "LoRA parameter");
        assertClose(losses(tmp.resolve("one")), losses(tmp.resolve("two")), "step (step, loss, grad norm)");
        assertEquals(4, losses(tmp.resolve("two")).size(), "rank 0 alone writes the metrics");
        assertTrue(Files.isDirectory(tmp.resolve("two").resolve("adapter")));
    }

    /** An epoch's last micro-batch is short (5 examples, 4 per micro-batch): rank 1 gets no rows there and still agrees. */
    @Test
    void shortLastMicroBatchesGoToTheFirstRanks(@TempDir Path tmp) throws Exception {
        List<Example> data = TrainerTest.examples(5, 23);
        List<double[]> single = TrainerTest.train(TrainerTest.config(4, 1, 4, false), data, tmp.resolve("one"));
        List<double[]> parallel = trainParallel(2, TrainerTest.config(2, 1, 4, false), data, tmp.resolve("two"), false);
        assertClose(single, parallel, "LoRA parameter");
        assertClose(losses(tmp.resolve("one")), losses(tmp.resolve("two")), "step (step, loss, grad norm)");
    }

    @Test
    void aRunResumesWithAnotherNumberOfRanks(@TempDir Path tmp) throws Exception {
        List<Example> data = TrainerTest.examples(16, 22);
        TrainingConfig two = TrainerTest.config(2, 1, 6, false).withSchedule(3, 2, 0, 1);
        List<double[]> straight = TrainerTest.train(two, data, tmp.resolve("straight"));
        Path out = tmp.resolve("switched");
        try (LlamaModel m = LlamaModel.load(TrainerTest.modelDir, TrainerTest.be, DType.F64);
             LoraAdapter a = m.attachNewAdapter(LoraSettings.allProjections(4, 8), 11)) { // one process, stopped after step 4
            for (Parameter p : a.parameters()) if (p.name().endsWith("lora_B")) TrainerTest.be.kernels().fill(p.value(), 0.01);
            Trainer t = new Trainer(m, data, List.of(), two, out, 0).listen(new TrainingListener() {
                @Override
                public void onStep(StepMetrics s) {
                    if (s.step() == 4) throw new IllegalStateException("simulated stop after step 4");
                }
            });
            assertThrows(IllegalStateException.class, () -> t.run(false));
        }
        assertTrue(Files.isDirectory(out.resolve("checkpoint-3")));
        // the same global batch (2) as two ranks of 1: steps 4-6 again from the checkpoint of step 3
        List<double[]> resumed = trainParallel(2, TrainerTest.config(1, 1, 6, false).withSchedule(3, 2, 0, 1), data, out, true);
        assertClose(straight, resumed, "LoRA parameter");
        assertClose(losses(tmp.resolve("straight")), losses(out), "step (step, loss, grad norm)");
        // a different global batch would change the data order: refused, naming the setting that fits
        try (LlamaModel m = LlamaModel.load(TrainerTest.modelDir, TrainerTest.be, DType.F64);
             LoraAdapter a = m.attachNewAdapter(LoraSettings.allProjections(4, 8), 11)) {
            Trainer t = new Trainer(m, data, List.of(), TrainerTest.config(1, 1, 6, false).withSchedule(3, 2, 0, 1), out, 0);
            TrainingException e = assertThrows(TrainingException.class, () -> t.run(true));
            assertTrue(e.getMessage().contains("--batch-size 2 with 1 process"), e.getMessage());
        }
    }
}
