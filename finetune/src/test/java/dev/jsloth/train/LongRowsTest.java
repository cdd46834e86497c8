package dev.jsloth.train;

import dev.jsloth.data.BadRowPolicy;
import dev.jsloth.data.ChatTemplate;
import dev.jsloth.data.DatasetFormat;
import dev.jsloth.data.Example;
import dev.jsloth.data.LongRowPolicy;
import dev.jsloth.tokenizer.Tokenizer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Rows longer than the sequence length: split so that every target is kept once, or truncated. */
class LongRowsTest {
    /** Every trained target of the row (label at position >= 1) is a target of exactly one piece, at its own place. */
    @Test
    void piecesKeepEveryTargetExactlyOnce() {
        SplittableRandom r = new SplittableRandom(3);
        for (int trial = 0; trial < 500; trial++) {
            int seqLen = 2 + r.nextInt(40), n = seqLen + 1 + r.nextInt(300); // longer than seqLen, as prepare passes them
            int[] labels = new int[n];
            for (int i = 0; i < n; i++) labels[i] = r.nextInt(4) == 0 ? Example.IGNORE : 7 + i; // some masked, as a prompt would be
            checkPieces(labels, seqLen);
        }
        // the edges: one token too many, exact fits of the stride (n = k (seqLen - 1) + 1), the shortest sequence length
        for (int seqLen : new int[]{2, 3, 4, 17, 128}) {
            checkPieces(targets(seqLen + 1), seqLen);
            assertEquals(2, FineTuneJob.splitLongRow(row(targets(seqLen + 1)), seqLen).size(), "seqLen + 1 at " + seqLen);
            for (int k = 2; k <= 4; k++) {
                int n = k * (seqLen - 1) + 1;
                checkPieces(targets(n), seqLen);
                List<Example> pieces = FineTuneJob.splitLongRow(row(targets(n)), seqLen);
                assertEquals(k, pieces.size(), "n = " + n + " at seqLen " + seqLen);
                for (Example p : pieces) assertEquals(seqLen, p.length(), "exact fit: every piece full");
            }
        }
        assertEquals(4, FineTuneJob.splitLongRow(row(targets(5)), 2).size()); // (5, 2): pairs 0-1, 1-2, 2-3, 3-4
    }

    /** Pieces whose targets are all masked (a prompt's part of a row, a masked tail) are left out. */
    @Test
    void piecesWithoutTargetsAreLeftOut() {
        int[] labels = targets(40);
        for (int i = 20; i < 40; i++) labels[i] = Example.IGNORE; // the tail masked
        // seqLen 8: stride 7, pieces at 0, 7, 14, 21, 28, 35; 14's reaches targets 15..19; 21, 28 and 35 have none
        List<Example> pieces = FineTuneJob.splitLongRow(row(labels), 8);
        assertEquals(3, pieces.size());
        checkPieces(labels, 8);
        java.util.Arrays.fill(labels, Example.IGNORE);
        assertTrue(FineTuneJob.splitLongRow(row(labels), 8).isEmpty(), "a row with no target gives no piece");
    }

    private static int[] targets(int n) {
        int[] labels = new int[n];
        for (int i = 0; i < n; i++) labels[i] = 7 + i;
        return labels;
    }

    /** A row whose ids are its labels where they are targets (ids and labels told apart by position only). */
    private static Example row(int[] labels) {
        int[] ids = new int[labels.length];
        for (int i = 0; i < ids.length; i++) ids[i] = 1000 + i;
        return new Example(ids, labels.clone());
    }

    /** Splits a row of these labels and checks every target lands in exactly one piece, at its place, and nothing else. */
    private static void checkPieces(int[] labels, int seqLen) {
        int n = labels.length;
        Example e = row(labels);
        List<Example> pieces = FineTuneJob.splitLongRow(e, seqLen);
        int[] seen = new int[n];
        for (Example p : pieces) {
            assertTrue(p.length() >= 2 && p.length() <= seqLen, "piece of " + p.length() + " for seqLen " + seqLen);
            int start = p.inputIds()[0] - 1000; // ids are 1000 + position
            assertEquals(0, start % (seqLen - 1), "pieces start at multiples of seqLen - 1");
            assertArrayEquals(java.util.Arrays.copyOfRange(e.inputIds(), start, start + p.length()), p.inputIds());
            boolean any = false;
            for (int j = 1; j < p.length(); j++) {
                assertEquals(labels[start + j], p.labels()[j]);
                if (p.labels()[j] != Example.IGNORE) {
                    seen[start + j]++;
                    any = true;
                }
            }
            assertTrue(any, "a piece without a target at " + start);
        }
        for (int i = 1; i < n; i++)
            assertEquals(labels[i] == Example.IGNORE ? 0 : 1, seen[i], "target " + i + " of " + n + " at seqLen " + seqLen);
    }

    @Test
    void textRowsAreSplitAndPromptRowsTruncatedUnlessTold(@TempDir Path tmp) throws Exception {
        Files.copy(Path.of(LongRowsTest.class.getResource("/fixtures/byte-tokenizer.json").toURI()), tmp.resolve("tokenizer.json"));
        Tokenizer tok = Tokenizer.load(tmp.resolve("tokenizer.json"));
        Path text = tmp.resolve("text.jsonl"), alpaca = tmp.resolve("alpaca.jsonl");
        String longText = "x".repeat(1000); // a token a byte: 1,000 tokens and more
        Files.writeString(text, "{\"text\": \"" + longText + "\"}\n{\"text\": \"short\"}\n");
        Files.writeString(alpaca, "{\"instruction\": \"Repeat\", \"input\": \"\", \"output\": \"" + longText + "\"}\n");
        ChatTemplate tpl = ChatTemplate.builtin("chatml");
        FineTuneJob.PreparedData auto = FineTuneJob.prepare(text, tok, tpl, 0, DatasetFormat.AUTO, BadRowPolicy.SKIP,
                LongRowPolicy.AUTO, true, 128, 0, 1);
        assertEquals(1, auto.splitRows());
        assertEquals(0, auto.truncated());
        assertEquals(auto.pieces() + 1, auto.train().size());
        assertTrue(auto.pieces() >= 1000 / 127, auto.pieces() + " pieces");
        // an eval split holds out rows, not pieces: the long row's pieces stay together on one side
        FineTuneJob.PreparedData held = FineTuneJob.prepare(text, tok, tpl, 0, DatasetFormat.AUTO, BadRowPolicy.SKIP,
                LongRowPolicy.AUTO, true, 128, 0.5, 1);
        assertEquals(1, Math.min(held.train().size(), held.eval().size()), held.train().size() + " / " + held.eval().size());
        assertEquals(auto.pieces() + 1, held.train().size() + held.eval().size());
        FineTuneJob.PreparedData cut = FineTuneJob.prepare(text, tok, tpl, 0, DatasetFormat.AUTO, BadRowPolicy.SKIP,
                LongRowPolicy.TRUNCATE, true, 128, 0, 1);
        assertEquals(List.of(0, 1, 2), List.of(cut.splitRows(), cut.truncated(), cut.train().size()));
        // (the Alpaca prompt is ~200 tokens here: 512 leaves part of the response in the first piece)
        FineTuneJob.PreparedData prompt = FineTuneJob.prepare(alpaca, tok, tpl, 0, DatasetFormat.AUTO, BadRowPolicy.SKIP,
                LongRowPolicy.AUTO, true, 512, 0, 1);
        assertEquals(List.of(0, 1, 1), List.of(prompt.splitRows(), prompt.truncated(), prompt.train().size()));
        // a prompt longer than the sequence length: truncated, nothing of the response is left to train on; the row is
        // skipped (and counted once: not as truncated too), the message names its line and --seq-len
        Path longPrompt = tmp.resolve("long-prompt.jsonl");
        Files.writeString(longPrompt, "{\"instruction\": \"" + longText + "\", \"input\": \"\", \"output\": \"ok\"}\n"
                + "{\"instruction\": \"Say hi\", \"input\": \"\", \"output\": \"hi\"}\n");
        FineTuneJob.PreparedData noTargets = FineTuneJob.prepare(longPrompt, tok, tpl, 0, DatasetFormat.AUTO, BadRowPolicy.SKIP,
                LongRowPolicy.AUTO, true, 300, 0, 1);
        assertEquals(List.of(1, 0, 1), List.of(noTargets.skippedRows(), noTargets.truncated(), noTargets.train().size()));
        assertTrue(noTargets.problems().getFirst().contains("long-prompt.jsonl:1:") && noTargets.problems().getFirst().contains("--seq-len"),
                noTargets.problems().toString());
        FineTuneJob.PreparedData promptSplit = FineTuneJob.prepare(alpaca, tok, tpl, 0, DatasetFormat.AUTO, BadRowPolicy.SKIP,
                LongRowPolicy.SPLIT, true, 512, 0, 1);
        assertEquals(1, promptSplit.splitRows());
        assertTrue(promptSplit.train().size() > 1);
        for (Example e : promptSplit.train()) assertTrue(e.length() <= 512);
    }

    /** A resumed run takes its checkpoint's long-row policy unless told, and refuses another one. */
    @Test
    void resumedRunsKeepTheirCheckpointsLongRowPolicy() {
        Path out = Path.of("out");
        assertEquals(LongRowPolicy.AUTO, FineTuneJob.longRowPolicy(null, java.util.Optional.empty(), out));
        assertEquals(LongRowPolicy.SPLIT, FineTuneJob.longRowPolicy(LongRowPolicy.SPLIT, java.util.Optional.empty(), out));
        var split = java.util.Optional.of(java.util.Map.of(FineTuneJob.LONG_ROWS, "SPLIT"));
        assertEquals(LongRowPolicy.SPLIT, FineTuneJob.longRowPolicy(null, split, out));
        assertEquals(LongRowPolicy.SPLIT, FineTuneJob.longRowPolicy(LongRowPolicy.SPLIT, split, out));
        // a checkpoint from before the setting was recorded decides nothing (the example count does)
        var old = java.util.Optional.of(java.util.Map.<String, String>of());
        assertEquals(LongRowPolicy.AUTO, FineTuneJob.longRowPolicy(null, old, out));
        assertEquals(LongRowPolicy.TRUNCATE, FineTuneJob.longRowPolicy(LongRowPolicy.TRUNCATE, old, out));
        TrainingException e = org.junit.jupiter.api.Assertions.assertThrows(TrainingException.class,
                () -> FineTuneJob.longRowPolicy(LongRowPolicy.AUTO, java.util.Optional.of(java.util.Map.of(FineTuneJob.LONG_ROWS, "TRUNCATE")), out));
        assertTrue(e.getMessage().contains("--long-rows truncate") && e.getMessage().contains("now it is auto"), e.getMessage());
        var bad = java.util.Optional.of(java.util.Map.of(FineTuneJob.LONG_ROWS, "SIDEWAYS"));
        assertTrue(org.junit.jupiter.api.Assertions.assertThrows(TrainingException.class, () -> FineTuneJob.longRowPolicy(null, bad, out))
                .getMessage().contains("'SIDEWAYS'"));
    }

    /** A resumed run trains in its checkpoint's compute type unless --precision says otherwise (and then it says so). */
    @Test
    void resumedRunsKeepTheirCheckpointsPrecisionUnlessTold() {
        List<String> log = new java.util.ArrayList<>();
        var f64 = java.util.Optional.of(java.util.Map.of(Trainer.COMPUTE_TYPE, "F64"));
        assertEquals(dev.jsloth.api.DType.F32, FineTuneJob.computeType(null, dev.jsloth.api.DType.F32, java.util.Optional.empty(), log::add));
        assertEquals(dev.jsloth.api.DType.F64, FineTuneJob.computeType(null, dev.jsloth.api.DType.BF16, f64, log::add));
        assertTrue(log.getLast().contains("resuming in F64"), log.toString());
        assertEquals(dev.jsloth.api.DType.BF16, FineTuneJob.computeType(dev.jsloth.api.DType.BF16, dev.jsloth.api.DType.F32, f64, log::add));
        assertTrue(log.getLast().contains("trained in F64") && log.getLast().contains("goes on in BF16"), log.toString());
        int said = log.size();
        assertEquals(dev.jsloth.api.DType.F32, FineTuneJob.computeType(null, dev.jsloth.api.DType.F32,
                java.util.Optional.of(java.util.Map.of()), log::add), "a checkpoint from before the setting: the preferred type");
        assertEquals(said, log.size());
    }
}
