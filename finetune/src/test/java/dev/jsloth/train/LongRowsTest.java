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

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Rows longer than the sequence length: split so that every target is kept once, or truncated. */
class LongRowsTest {
    /** Every trained target of the row (label at position >= 1) is a target of exactly one piece, at its own place. */
    @Test
    void piecesKeepEveryTargetExactlyOnce() {
        SplittableRandom r = new SplittableRandom(3);
        for (int trial = 0; trial < 500; trial++) {
            int n = 2 + r.nextInt(300), seqLen = 2 + r.nextInt(40);
            int[] ids = new int[n], labels = new int[n];
            for (int i = 0; i < n; i++) {
                ids[i] = r.nextInt(1000);
                labels[i] = r.nextInt(4) == 0 ? Example.IGNORE : ids[i]; // some positions masked, as a prompt would be
            }
            Example e = new Example(ids, labels);
            List<Example> pieces = FineTuneJob.splitLongRow(e, seqLen);
            int[] seen = new int[n];
            int start = 0;
            for (Example p : pieces) {
                assertTrue(p.length() >= 2 && p.length() <= seqLen, "piece of " + p.length() + " for seqLen " + seqLen);
                // the pieces lie at multiples of seqLen - 1; find this one's place (pieces without targets are left out)
                while (!java.util.Arrays.equals(p.inputIds(), java.util.Arrays.copyOfRange(ids, start, Math.min(n, start + p.length()))))
                    start += seqLen - 1;
                for (int j = 1; j < p.length(); j++) {
                    assertEquals(labels[start + j], p.labels()[j]);
                    if (p.labels()[j] != Example.IGNORE) seen[start + j]++;
                }
                start += seqLen - 1;
            }
            for (int i = 1; i < n; i++)
                assertEquals(labels[i] == Example.IGNORE ? 0 : 1, seen[i], "target " + i + " of " + n + " at seqLen " + seqLen);
        }
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
        FineTuneJob.PreparedData promptSplit = FineTuneJob.prepare(alpaca, tok, tpl, 0, DatasetFormat.AUTO, BadRowPolicy.SKIP,
                LongRowPolicy.SPLIT, true, 512, 0, 1);
        assertEquals(1, promptSplit.splitRows());
        assertTrue(promptSplit.train().size() > 1);
        for (Example e : promptSplit.train()) assertTrue(e.length() <= 512);
    }
}
