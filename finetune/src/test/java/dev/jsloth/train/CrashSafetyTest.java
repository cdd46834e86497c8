package dev.jsloth.train;

import dev.jsloth.api.Backend;
import dev.jsloth.api.DType;
import dev.jsloth.api.spi.Backends;
import dev.jsloth.demo.DemoAssets;
import dev.jsloth.model.LlamaConfig;
import dev.jsloth.model.LoraAdapter;
import dev.jsloth.model.LoraSettings;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.File;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Kills a training process (a child JVM running {@code jsloth finetune}) at random moments and checks that the
 * output directory always holds a complete, loadable last checkpoint, and that {@code --resume} then finishes with
 * exactly the loss curve of an uninterrupted run.
 */
class CrashSafetyTest {
    static final int KILLS = 4, STEPS = 14;

    static List<String> command(Path assets, Path out, boolean resume) {
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        List<String> cmd = new ArrayList<>(List.of(java, "--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED",
                "-cp", System.getProperty("java.class.path"), "dev.jsloth.cli.Main", "finetune",
                "--model", DemoAssets.modelDir(assets).toString(), "--data", DemoAssets.dataset(assets).toString(),
                "--output", out.toString(), "--max-steps", String.valueOf(STEPS), "--batch-size", "5", "--grad-accum", "1",
                "--seq-len", "128", "--lr", "4e-3", "--save-every", "1", "--save-total-limit", "2", "--lora-r", "8"));
        if (resume) cmd.add("--resume");
        return cmd;
    }

    static Process start(List<String> cmd, Path log) throws Exception {
        return new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(log.toFile()).start();
    }

    @Test
    void killedRunsLeaveLoadableCheckpointsAndResumeExactly(@TempDir Path tmp) throws Exception {
        Path assets = DemoAssets.ensure(tmp.resolve("demo"));
        Path reference = tmp.resolve("reference");
        Process ref = start(command(assets, reference, false), tmp.resolve("ref.log"));
        assertTrue(ref.waitFor(5, TimeUnit.MINUTES) && ref.exitValue() == 0, Files.readString(tmp.resolve("ref.log")));
        List<String> want = TrainerTest.losses(reference);
        assertEquals(STEPS, want.size());

        Path out = tmp.resolve("killed");
        SplittableRandom r = new SplittableRandom(2026);
        LlamaConfig cfg = LlamaConfig.read(DemoAssets.modelDir(assets));
        int killsAfterACheckpoint = 0, kills = 0;
        for (int k = 0; k < KILLS; k++) {
            boolean resume = new CheckpointStore(out, 2).latest().isPresent();
            Path log = tmp.resolve("run" + k + ".log");
            Process p = start(command(assets, out, resume), log);
            // kill at a random moment after a random step was logged: inside a step, or while a checkpoint is written
            int atStep = 2 + r.nextInt(STEPS - 4);
            long deadline = System.nanoTime() + TimeUnit.MINUTES.toNanos(3);
            while (p.isAlive() && System.nanoTime() < deadline
                    && !(Files.exists(log) && Files.readString(log).matches("(?s).*step (" + atStep + "|" + (atStep + 1) + "|" + (atStep + 2) + ")/.*")))
                Thread.sleep(20);
            Thread.sleep(r.nextInt(400));
            if (!p.isAlive()) break; // finished before the kill: nothing to test this round
            p.destroyForcibly().waitFor();
            kills++;
            var latest = new CheckpointStore(out, 2).latest();
            if (latest.isEmpty()) continue; // killed before the first checkpoint
            killsAfterACheckpoint++;
            // the newest complete checkpoint loads: adapter (PEFT files) and optimizer state
            try (Backend be = Backends.create("cpu");
                 LoraAdapter a = LoraAdapter.initialise(cfg, LoraSettings.allProjections(8, 16), be, DType.F32, 1);
                 AdamW opt = new AdamW(a.parameters(), 0.9, 0.999, 1e-8, 0.01)) {
                CheckpointStore.restore(latest.get(), a, opt);
                try (LoraAdapter peft = LoraAdapter.load(latest.get(), cfg, be, DType.F32)) {
                    assertEquals(a.parameterCount(), peft.parameterCount());
                }
            }
            for (File f : out.toFile().listFiles())
                assertTrue(!f.getName().startsWith("checkpoint-") || new File(f, CheckpointStore.STATE).isFile(), "incomplete " + f);
        }
        Process fin = start(command(assets, out, new CheckpointStore(out, 2).latest().isPresent()), tmp.resolve("final.log"));
        assertTrue(fin.waitFor(5, TimeUnit.MINUTES) && fin.exitValue() == 0, Files.readString(tmp.resolve("final.log")));
        assertEquals(want, TrainerTest.losses(out), "resumed loss curve differs from the uninterrupted run");
        System.out.printf("[crash] %d kills (%d after a checkpoint); resumed curve equals the uninterrupted one over %d steps%n", kills, killsAfterACheckpoint, STEPS);
        assertTrue(killsAfterACheckpoint > 0, "no kill landed after a checkpoint: the test proved nothing");
    }
}
