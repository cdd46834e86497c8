package dev.jsloth.cli;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The command line end to end: a real fine-tune on an HF checkpoint + Alpaca JSONL, and bad input reported clearly. */
class CliTest {
    record Run(int code, String out, String err) {
    }

    static Run run(String... args) {
        CommandLine cl = Main.commandLine();
        StringWriter err = new StringWriter();
        cl.setErr(new PrintWriter(err));
        PrintStream old = System.out;
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        System.setOut(new PrintStream(out, true));
        try {
            return new Run(cl.execute(args), out.toString(), err.toString());
        } finally {
            System.setOut(old);
        }
    }

    static Path fixture(String name) throws Exception {
        return dev.jsloth.GoldenFixtures.model(name);
    }

    @Test
    void finetunesAnHfCheckpointOnAlpacaJsonl(@TempDir Path tmp) throws Exception {
        // the fixture checkpoint has no tokenizer: give it a byte-level one whose ids (0..255) fit its 256-token vocabulary
        Path model = tmp.resolve("model");
        Files.createDirectories(model);
        for (String f : new String[]{"config.json", "model.safetensors"}) Files.copy(fixture("gqa-untied").resolve(f), model.resolve(f));
        Files.copy(Path.of(CliTest.class.getResource("/fixtures/byte-tokenizer.json").toURI()), model.resolve("tokenizer.json"));
        Path data = tmp.resolve("train.jsonl");
        Files.writeString(data, """
                {"instruction": "Say hi", "input": "", "output": "hi"}
                {"instruction": "Add", "input": "1+1", "output": "2"}
                {"instruction": "Broken row", "output": 5}
                {"instruction": "Name a colour", "input": "", "output": "red"}
                """);
        Run r = run("finetune", "--model", model.toString(), "--data", data.toString(), "--output", tmp.resolve("out").toString(),
                "--max-steps", "3", "--batch-size", "2", "--grad-accum", "1", "--seq-len", "512", "--lora-r", "4", "--save-every", "2",
                "--lora-dropout", "0.1");
        assertEquals(0, r.code(), r.err() + r.out());
        assertEquals(0.1, dev.jsloth.io.Json.read(tmp.resolve("out/adapter/adapter_config.json")).get("lora_dropout").asDouble(), r.out());
        assertTrue(r.out().contains("1 rows skipped") && r.out().contains("train.jsonl:3"), r.out());
        // no --precision: the backend's preferred training type (F32 on a CPU; bf16 on a GPU with tensor cores)
        assertTrue(r.out().contains(") in F32"), r.out());
        assertTrue(Files.isRegularFile(tmp.resolve("out/adapter/adapter_config.json")));
        assertTrue(Files.isRegularFile(tmp.resolve("out/loss.png")));
        assertTrue(Files.isRegularFile(tmp.resolve("out/checkpoint-2/trainer_state.json")));
        assertEquals(3, Files.readAllLines(tmp.resolve("out/metrics.jsonl")).size());

        Run strict = run("finetune", "--model", model.toString(), "--data", data.toString(), "--output", tmp.resolve("out2").toString(),
                "--max-steps", "1", "--bad-rows", "fail");
        assertEquals(1, strict.code());
        assertTrue(strict.err().contains("train.jsonl:3") && strict.err().contains("output"), strict.err());

        Run dropout = run("finetune", "--model", model.toString(), "--data", data.toString(), "--output", tmp.resolve("out3").toString(),
                "--max-steps", "1", "--lora-dropout", "1");
        assertTrue(dropout.code() != 0 && dropout.err().contains("LoRA dropout must be in [0, 1), got 1.0"), dropout.err());

        // the checkpoint records the run's compute type and long-row policy; a resumed run keeps them unless told
        var run = dev.jsloth.io.Json.read(tmp.resolve("out/checkpoint-2/trainer_state.json")).get("run");
        assertEquals("F32", run.get("compute_type").asText(), run.toString());
        assertEquals("AUTO", run.get("long_rows").asText(), run.toString());
        String[] resumed = {"finetune", "--model", model.toString(), "--data", data.toString(), "--output", tmp.resolve("out").toString(),
                "--max-steps", "4", "--batch-size", "2", "--grad-accum", "1", "--seq-len", "512", "--lora-r", "4", "--save-every", "2",
                "--lora-dropout", "0.1", "--resume"};
        Run other = run(concat(resumed, new String[]{"--long-rows", "truncate"}));
        assertTrue(other.code() != 0 && other.err().contains("Resume with --long-rows auto"), other.err() + other.out());
        Run again = run(resumed);
        assertEquals(0, again.code(), again.err() + again.out());
        assertEquals(4, Files.readAllLines(tmp.resolve("out/metrics.jsonl")).size());
    }

    @Test
    void benchGemmTakesSixteenBitOperands() throws Exception {
        Run r = run("bench", "--gemm", "24x40x16", "--dtype", "bf16", "--backend", "cpu", "--threads", "1", "--repeats", "1");
        assertEquals(0, r.code(), r.err() + r.out());
        var json = new com.fasterxml.jackson.databind.ObjectMapper().readTree(r.out().strip());
        assertEquals("bf16", json.get("operands").asText(), r.out());
        assertEquals("24x40x16", json.get("gemm").asText(), r.out());
        assertTrue(json.get("gflops").asDouble() > 0, r.out());
        Run bad = run("bench", "--gemm", "8x8x8", "--dtype", "f64", "--backend", "cpu");
        assertTrue(bad.code() != 0 && bad.err().contains("f64"), bad.err());
        Run word = run("bench", "--gemm", "8xeightx8", "--backend", "cpu");
        assertTrue(word.code() != 0 && word.err().contains("N = 'eight'"), word.err());
        Run zero = run("bench", "--gemm", "8x8x0", "--backend", "cpu");
        assertTrue(zero.code() != 0 && zero.err().contains("K must be positive"), zero.err());
        Run huge = run("bench", "--gemm", "65536x65536x8", "--backend", "cpu");
        assertTrue(huge.code() != 0 && huge.err().contains("2^31"), huge.err());
    }

    @Test
    void benchShapeAgainstAGemmInTheSameProcess() throws Exception {
        Run r = run("bench", "--shape", "tiny", "--batch", "1", "--seq", "32", "--steps", "2", "--backend", "cpu", "--threads", "1",
                "--vs-gemm", "32x48x16");
        assertEquals(0, r.code(), r.err() + r.out());
        var json = new com.fasterxml.jackson.databind.ObjectMapper().readTree(r.out().strip());
        assertEquals("32x48x16", json.get("vs_gemm").asText(), r.out());
        assertTrue(json.get("gemm_gflops").asDouble() > 0 && json.get("step_vs_gemm").asDouble() > 0, r.out());
        // checkpointing is on: what it recomputes counts in the executed figures only
        assertTrue(json.get("executed_vs_gemm").asDouble() > json.get("step_vs_gemm").asDouble(), r.out());
        assertTrue(json.get("executed_gflops").asDouble() > json.get("gflops").asDouble(), r.out());
        // the CPU backend runs each kernel as it is queued: nothing is left to wait for once the step returns
        double wait = json.get("device_wait_s").asDouble();
        assertTrue(wait >= 0 && wait < 0.5 * json.get("step_s").asDouble(), r.out());
        Run noGc = run("bench", "--shape", "tiny", "--batch", "1", "--seq", "32", "--steps", "2", "--backend", "cpu", "--threads", "1",
                "--no-gc", "--vs-gemm", "32x48x16");
        assertEquals(0, noGc.code(), noGc.err() + noGc.out());
        var plain = new com.fasterxml.jackson.databind.ObjectMapper().readTree(noGc.out().strip());
        assertEquals(plain.get("step_vs_gemm").asDouble(), plain.get("executed_vs_gemm").asDouble(), 1e-12, noGc.out());
        assertEquals(plain.get("gflops").asDouble(), plain.get("executed_gflops").asDouble(), 1e-9 * plain.get("gflops").asDouble(), noGc.out());
        Run bad = run("bench", "--shape", "tiny", "--backend", "cpu", "--vs-gemm", "32x48");
        assertTrue(bad.code() != 0 && bad.err().contains("MxNxK"), bad.err());
        // the paired GEMM's operands are not the training's memory: the same peak as without it
        Run alone = run("bench", "--shape", "tiny", "--batch", "1", "--seq", "32", "--steps", "2", "--backend", "cpu", "--threads", "1", "--no-gc");
        assertEquals(0, alone.code(), alone.err() + alone.out());
        assertEquals(new com.fasterxml.jackson.databind.ObjectMapper().readTree(alone.out().strip()).get("peak_bytes").asLong(),
                plain.get("peak_bytes").asLong(), alone.out() + noGc.out());
        Run zero = run("bench", "--shape", "tiny", "--steps", "0", "--backend", "cpu");
        assertTrue(zero.code() != 0 && zero.err().contains("--steps must be at least 1"), zero.err());
    }

    /**
     * {@code --gpus 2} on the CPU backend: two child JVMs as ranks 0 and 1 (the TCP communicator stands in for NCCL),
     * batch 1 each, train like one process of batch 2, LoRA dropout included (each token meets the mask one process
     * gives it); rank 0 alone writes.
     */
    @Test
    void gpusLaunchesOneProcessPerRankThatTrainsLikeOneLargerBatch(@TempDir Path tmp) throws Exception {
        Path model = tmp.resolve("model");
        Files.createDirectories(model);
        for (String f : new String[]{"config.json", "model.safetensors"}) Files.copy(fixture("gqa-untied").resolve(f), model.resolve(f));
        Files.copy(Path.of(CliTest.class.getResource("/fixtures/byte-tokenizer.json").toURI()), model.resolve("tokenizer.json"));
        Path data = tmp.resolve("train.jsonl");
        StringBuilder rows = new StringBuilder();
        for (int i = 0; i < 7; i++) rows.append("{\"instruction\": \"Count to ").append(i).append("\", \"input\": \"\", \"output\": \"")
                .append("1 2 3 4 5 6 7 8 9".substring(0, 2 * i + 1)).append("\"}\n");
        Files.writeString(data, rows);
        // 7 rows at 2 a micro-batch: each epoch's last micro-batch leaves rank 1 without rows; 2 micro-batches a step
        String[] common = {"--model", model.toString(), "--data", data.toString(), "--max-steps", "3", "--grad-accum", "2", "--seq-len", "512",
                "--lora-r", "4", "--backend", "cpu", "--precision", "f64", "--lora-dropout", "0.2"};
        Run one = run(concat(new String[]{"finetune", "--output", tmp.resolve("one").toString(), "--batch-size", "2"}, common));
        assertEquals(0, one.code(), one.err() + one.out());
        Run two = run(concat(new String[]{"finetune", "--output", tmp.resolve("two").toString(), "--batch-size", "1", "--gpus", "2"}, common));
        assertEquals(0, two.code(), two.err() + two.out());
        List<String> a = Files.readAllLines(tmp.resolve("one/metrics.jsonl")), b = Files.readAllLines(tmp.resolve("two/metrics.jsonl"));
        assertEquals(3, b.size(), "rank 0 alone writes the metrics");
        for (int i = 0; i < 3; i++) {
            double la = dev.jsloth.io.Json.MAPPER.readTree(a.get(i)).get("loss").asDouble(), lb = dev.jsloth.io.Json.MAPPER.readTree(b.get(i)).get("loss").asDouble();
            assertEquals(la, lb, 1e-10 * Math.abs(la), "step " + (i + 1) + " loss");
        }
        assertTrue(Files.isRegularFile(tmp.resolve("two/adapter/adapter_model.safetensors")));
    }

    /**
     * {@code --gpus N} checks the devices before any rank starts: past the GPUs present (the extra ranks would fall
     * back to the CPU) or with no GPU backend at all (unless the CPU backend is named), a clear error and no rank.
     */
    @Test
    void gpusPastTheDevicesPresentIsRefusedBeforeAnyRankStarts() {
        int cudaDevices = dev.jsloth.api.spi.Backends.providers().stream().filter(p -> p.name().equals("cuda"))
                .mapToInt(p -> p.deviceCount().orElse(0)).findFirst().orElse(0);
        int ask = Math.max(2, cudaDevices + 1);
        Run r = run("bench", "--shape", "llama-25m", "--batch", "1", "--seq", "16", "--steps", "1", "--gpus", Integer.toString(ask));
        assertEquals(1, r.code(), r.out() + r.err());
        String want = cudaDevices > 0 ? "--gpus " + ask + " starts one process a GPU, but the cuda backend sees " + cudaDevices
                : "--gpus " + ask + ": no GPU backend is usable here";
        assertTrue(r.err().contains(want), r.err());
        assertFalse(r.out().contains("tok_s"), r.out());
    }

    @Test
    void errorsCarryTheMessagesUnderThem() {
        var e = new java.io.UncheckedIOException("all-reduce over TCP (rank 1 of 2)", new java.io.EOFException("peer closed"));
        assertEquals("all-reduce over TCP (rank 1 of 2): peer closed", Main.describe(e));
        assertEquals("no such file: x.json", Main.describe(new java.nio.file.NoSuchFileException("x.json")));
        var same = new IllegalStateException("bad row", new IllegalArgumentException("bad row"));
        assertEquals("bad row", Main.describe(same));
    }

    /**
     * The demo takes its own settings only where an option is not given: LoRA r / alpha / dropout / targets / rsLoRA,
     * the learning rate, batch, sequence length, schedule, steps or epochs given on its command line are used (they
     * were silently replaced by the demo's before).
     */
    @Test
    void theDemoTakesTheOptionsItIsGiven() {
        FinetuneCommand plain = new FinetuneCommand();
        new CommandLine(plain).parseArgs();
        dev.jsloth.model.LoraSettings l = plain.loraSettings(true);
        assertEquals(16, l.rank());
        assertEquals(32.0, l.alpha());
        assertEquals(0.0, l.dropout());
        assertEquals(java.util.EnumSet.allOf(dev.jsloth.model.Projection.class), l.targets());
        dev.jsloth.train.TrainingConfig c = plain.demoConfig();
        assertEquals(100, c.maxSteps());
        assertEquals(5, c.batchSize());
        assertEquals(128, c.seqLen());
        assertEquals(4e-3, c.lr());
        assertEquals(dev.jsloth.train.TrainingConfig.Schedule.COSINE, c.schedule());

        FinetuneCommand given = new FinetuneCommand();
        new CommandLine(given).parseArgs("--lora-r", "4", "--lora-dropout", "0.1", "--targets", "q_proj,v_proj", "--rslora", "--lr", "1e-3",
                "--batch-size", "3", "--seq-len", "64", "--schedule", "linear", "--epochs", "2", "--packing");
        l = given.loraSettings(true);
        assertEquals(4, l.rank());
        assertEquals(32.0, l.alpha(), "alpha not given: the demo's");
        assertEquals(0.1, l.dropout());
        assertTrue(l.rsLora());
        assertEquals(java.util.EnumSet.of(dev.jsloth.model.Projection.parse("q_proj"), dev.jsloth.model.Projection.parse("v_proj")), l.targets());
        c = given.demoConfig();
        assertEquals(0, c.maxSteps(), "epochs given: no step limit");
        assertEquals(2, c.epochs());
        assertEquals(3, c.batchSize());
        assertEquals(64, c.seqLen());
        assertEquals(1e-3, c.lr());
        assertEquals(dev.jsloth.train.TrainingConfig.Schedule.LINEAR, c.schedule());
        assertTrue(c.packing());
        FinetuneCommand ratio = new FinetuneCommand();
        new CommandLine(ratio).parseArgs("--warmup-ratio", "0.03");
        assertEquals(0.03, ratio.demoConfig().warmupSteps(), "a ratio of the run's steps");
        for (String bad : new String[]{"1", "1.0", "2", "-0.1"}) { // a ratio, never a number of steps
            FinetuneCommand r = new FinetuneCommand();
            new CommandLine(r).parseArgs("--warmup-ratio", bad);
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, r::demoConfig);
            assertTrue(e.getMessage().contains("--warmup-ratio takes a ratio"), e.getMessage());
        }
        FinetuneCommand both = new FinetuneCommand();
        new CommandLine(both).parseArgs("--warmup-ratio", "0.1", "--warmup-steps", "3");
        assertTrue(assertThrows(IllegalArgumentException.class, both::demoConfig).getMessage().contains("not both"));
        assertEquals(16, given.loraSettings(false).alpha(), 0.0, "outside the demo the option defaults stand");
    }

    static String[] concat(String[] a, String[] b) {
        String[] out = java.util.Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, out, a.length, b.length);
        return out;
    }

    @Test
    void missingFilesAndBadBatchesAreClearErrors(@TempDir Path tmp) throws Exception {
        Run r = run("loss", "--model", tmp.resolve("nope").toString(), "--batch", tmp.resolve("b.json").toString());
        assertEquals(1, r.code());
        assertTrue(r.err().contains("no such file") && r.err().contains("b.json"), r.err());
        Path batch = tmp.resolve("b.json");
        Files.writeString(batch, "{\"input_ids\": [[1, 2, 3]]}");
        Run noModel = run("loss", "--model", tmp.resolve("nope").toString(), "--batch", batch.toString());
        assertTrue(noModel.err().contains("no such file") && noModel.err().contains("nope"), noModel.err());
        Files.writeString(batch, "{\"input_ids\": [[1, 2, 3], [4, 5]]}");
        Run ragged = run("loss", "--model", fixture("gqa-untied").toString(), "--batch", batch.toString());
        assertEquals(1, ragged.code());
        assertTrue(ragged.err().contains("input_ids[1]"), ragged.err());
        Files.writeString(batch, "{\"input_ids\": [[1, 2, 300]]}");
        Run range = run("loss", "--model", fixture("gqa-untied").toString(), "--batch", batch.toString());
        assertTrue(range.err().contains("input id 300") && range.err().contains("vocabulary"), range.err());
        Run longRows = run("finetune", "--long-rows", "sideways");
        assertTrue(longRows.code() != 0 && longRows.err().contains("--long-rows takes auto, split or truncate, got 'sideways'"), longRows.err());
    }

    @Test
    void lossAndGenerateMatchTheFixture() throws Exception {
        Path dir = fixture("tied-odd");
        Run g = run("generate", "--model", dir.toString(), "--prompt-ids", String.join(",", ids(dir, "gen_prompt")), "--max-new-tokens", "16", "--precision", "f64");
        assertEquals(0, g.code(), g.err());
        assertEquals("{\"ids\":[" + String.join(",", ids(dir, "gen_base")) + "]}", g.out().trim());
    }

    /** A sharded checkpoint in the working directory, opened as {@code --model .} (its shards' paths then have no parent). */
    @Test
    void shardedCheckpointOpenedAsTheWorkingDirectory(@TempDir Path tmp) throws Exception {
        Path src = fixture("tied-odd"), dir = tmp.resolve("sharded");
        Files.createDirectories(dir);
        Files.copy(src.resolve("config.json"), dir.resolve("config.json"));
        var map = dev.jsloth.io.Json.MAPPER.createObjectNode();
        try (dev.jsloth.io.SafeTensorsFile f = dev.jsloth.io.SafeTensorsFile.open(src.resolve("model.safetensors"))) {
            java.util.List<String> names = f.names();
            for (int s = 0; s < 2; s++) {
                String file = "model-0000" + (s + 1) + "-of-00002.safetensors";
                dev.jsloth.io.SafeTensorsWriter w = new dev.jsloth.io.SafeTensorsWriter();
                for (String n : names.subList(s * names.size() / 2, (s + 1) * names.size() / 2)) {
                    w.add(n, f.entry(n).dtype(), f.entry(n).shape(), f.bytes(n));
                    map.put(n, file);
                }
                w.write(dir.resolve(file));
            }
        }
        var index = dev.jsloth.io.Json.MAPPER.createObjectNode();
        index.putObject("metadata");
        index.set("weight_map", map);
        dev.jsloth.io.Json.write(dir.resolve(dev.jsloth.io.SafeTensorsCheckpoint.INDEX), index);
        String javaBin = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        Process p = new ProcessBuilder(javaBin, "--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED",
                "-cp", System.getProperty("java.class.path"), "dev.jsloth.cli.Main", "generate", "--model", ".", "--backend", "cpu",
                "--prompt-ids", String.join(",", ids(src, "gen_prompt")), "--max-new-tokens", "16", "--precision", "f64")
                .directory(dir.toFile()).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), java.nio.charset.StandardCharsets.UTF_8);
        assertEquals(0, p.waitFor(), out);
        assertTrue(out.contains("{\"ids\":[" + String.join(",", ids(src, "gen_base")) + "]}"), out);
    }

    static String[] ids(Path dir, String field) throws Exception {
        var n = dev.jsloth.io.Json.read(dir.resolve("expected.json")).get(field);
        String[] out = new String[n.size()];
        for (int i = 0; i < out.length; i++) out[i] = n.get(i).asText();
        return out;
    }

    @Test
    void backendsListsTheCpuBackend() {
        Run r = run("backends");
        assertEquals(0, r.code());
        assertTrue(r.out().contains("cpu") && r.out().contains("available"), r.out());
    }
}
