package dev.jsloth.data;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** JSONL and JSON loading: valid rows, bad rows reported as FILE:LINE under SKIP and thrown under FAIL, size bounds. */
class DataLoaderTest {
    @TempDir
    Path dir;

    private Path write(String name, String content) throws IOException {
        Path p = dir.resolve(name);
        Files.writeString(p, content, StandardCharsets.UTF_8);
        return p;
    }

    private static String lines(String... rows) {
        return String.join("\n", rows) + "\n";
    }

    @Test
    void goodAlpacaJsonlWithBlankLinesAndCrlf() throws IOException {
        Path f = write("data.jsonl", "{\"instruction\":\"Add\",\"input\":\"1+1\",\"output\":\"2\"}\r\n"
                + "\n   \n"
                + "{\"instruction\":\"Greet\",\"output\":\"Hello\",\"id\":17}\n");
        LoadedDataset d = DatasetLoader.load(f, DatasetFormat.ALPACA, BadRowPolicy.FAIL);
        assertEquals(List.of(new AlpacaRecord(1, "Add", "1+1", "2"), new AlpacaRecord(4, "Greet", "", "Hello")), d.records());
        assertEquals(0, d.skipped());
        assertEquals(List.of(), d.problems());
    }

    private static final String[] MIXED = {
            "{\"instruction\":\"a\",\"output\":\"b\"}",                  // 1 ok
            "{\"instruction\":\"a\",\"output\":5}",                      // 2 output not a string
            "{\"instruction\":\"a\",\"output\":\"b\"",                   // 3 malformed JSON
            "",                                                          // 4 blank: ignored
            "[1,2]",                                                     // 5 not an object
            "{\"instruction\":\"  \",\"output\":\"b\"}",                 // 6 blank instruction
            "{\"instruction\":\"a\",\"input\":null,\"output\":\"b\"}",   // 7 input not a string
            "{\"instruction\":\"a\"}",                                   // 8 missing output
            "{\"instruction\":\"a\",\"output\":\"b\",\"output\":\"c\"}", // 9 duplicate key
            "{\"instruction\":\"a\",\"output\":\"b\"} trailing",         // 10 trailing garbage
            "{\"instruction\":\"c\",\"output\":\"d\"}"};                 // 11 ok

    @Test
    void badRowsAreSkippedAndReportedWithFileAndLine() throws IOException {
        Path f = write("data.jsonl", lines(MIXED));
        LoadedDataset d = DatasetLoader.load(f, DatasetFormat.ALPACA, BadRowPolicy.SKIP);
        assertEquals(List.of(new AlpacaRecord(1, "a", "", "b"), new AlpacaRecord(11, "c", "", "d")), d.records());
        assertEquals(8, d.skipped());
        List<String> p = d.problems();
        assertEquals(8, p.size());
        assertEquals("data.jsonl:2: field \"output\" must be a string (got a number)", p.get(0));
        assertTrue(p.get(1).startsWith("data.jsonl:3: invalid JSON"), p.get(1));
        assertEquals("data.jsonl:5: expected a JSON object, got an array", p.get(2));
        assertEquals("data.jsonl:6: field \"instruction\" must not be empty", p.get(3));
        assertEquals("data.jsonl:7: field \"input\" must be a string (got null)", p.get(4));
        assertEquals("data.jsonl:8: missing field \"output\"", p.get(5));
        assertTrue(p.get(6).startsWith("data.jsonl:9: invalid JSON") && p.get(6).contains("Duplicate field"), p.get(6));
        assertTrue(p.get(7).startsWith("data.jsonl:10: invalid JSON"), p.get(7));
    }

    @Test
    void failPolicyThrowsTheFirstProblem() throws IOException {
        Path f = write("data.jsonl", lines(MIXED));
        DatasetException e = assertThrows(DatasetException.class, () -> DatasetLoader.load(f, DatasetFormat.ALPACA, BadRowPolicy.FAIL));
        assertEquals("data.jsonl:2: field \"output\" must be a string (got a number)", e.getMessage());
        assertInstanceOf(IOException.class, e);
    }

    @Test
    void malformedJsonLineFailsWithItsLineNumber() throws IOException {
        Path f = write("data.jsonl", lines("{\"text\":\"fine\"}", "{\"text\": oops}"));
        DatasetException e = assertThrows(DatasetException.class, () -> DatasetLoader.load(f, DatasetFormat.AUTO, BadRowPolicy.FAIL));
        assertTrue(e.getMessage().startsWith("data.jsonl:2: invalid JSON at column "), e.getMessage());
    }

    @Test
    void toolCallsAreRefusedNotDropped() throws IOException {
        Path f = write("tools.jsonl", """
                {"messages": [{"role": "user", "content": "Weather?"}, {"role": "assistant", "content": "Checking", "tool_calls": [{"type": "function"}]}]}
                {"tools": [{"type": "function"}], "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}
                {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}
                {"tools": [], "messages": [{"role": "user", "content": "Hi", "name": "ann"}, {"role": "assistant", "content": "Hello", "tool_calls": null}]}
                """);
        LoadedDataset d = DatasetLoader.load(f, DatasetFormat.AUTO, BadRowPolicy.SKIP);
        assertEquals(2, d.records().size(), "empty tool fields and a speaker's name are no tool use");
        assertEquals(2, d.problems().size(), d.problems().toString());
        assertTrue(d.problems().get(0).startsWith("tools.jsonl:1: field \"messages[1].tool_calls\" is not supported"), d.problems().get(0));
        assertTrue(d.problems().get(1).startsWith("tools.jsonl:2: field \"tools\" is not supported"), d.problems().get(1));
    }

    @Test
    void jsonArrayUsesElementIndexAsLine() throws IOException {
        Path f = write("data.json", """
                [
                  {"text": "one"},
                  {"text": 2},
                  {"text": "three"}
                ]
                """);
        LoadedDataset d = DatasetLoader.load(f, DatasetFormat.AUTO, BadRowPolicy.SKIP);
        assertEquals(List.of(new TextRecord(1, "one"), new TextRecord(3, "three")), d.records());
        assertEquals(List.of("data.json:2: field \"text\" must be a string (got a number)"), d.problems());
    }

    @Test
    void nonObjectRowsAreBadRows() throws IOException {
        Path json = write("scalars.json", "[null, 3, \"s\", {\"text\": \"ok\"}]");
        LoadedDataset d = DatasetLoader.load(json, DatasetFormat.AUTO, BadRowPolicy.SKIP);
        assertEquals(List.of(new TextRecord(4, "ok")), d.records());
        assertEquals(List.of("scalars.json:1: expected a JSON object, got null", "scalars.json:2: expected a JSON object, got a number",
                "scalars.json:3: expected a JSON object, got a string"), d.problems());
        Path jsonl = write("scalars.jsonl", lines("null", "{\"text\": \"ok\"}", "true"));
        LoadedDataset l = DatasetLoader.load(jsonl, DatasetFormat.TEXT, BadRowPolicy.SKIP);
        assertEquals(List.of("scalars.jsonl:1: expected a JSON object, got null", "scalars.jsonl:3: expected a JSON object, got a boolean"),
                l.problems());
    }

    @Test
    void jsonObjectWithDataOrTrainArray() throws IOException {
        Path data = write("a.json", "{\"version\": 1, \"meta\": {\"x\": [1]}, \"data\": [{\"text\": \"t\"}]}");
        assertEquals(List.of(new TextRecord(1, "t")), DatasetLoader.load(data, DatasetFormat.TEXT, BadRowPolicy.FAIL).records());
        Path train = write("b.json", "{\"train\": [{\"instruction\": \"i\", \"output\": \"o\"}]}");
        assertEquals(List.of(new AlpacaRecord(1, "i", "", "o")), DatasetLoader.load(train, DatasetFormat.AUTO, BadRowPolicy.FAIL).records());
        Path both = write("c.json", "{\"train\": [], \"data\": []}");
        assertThrows(DatasetException.class, () -> DatasetLoader.load(both, DatasetFormat.AUTO, BadRowPolicy.SKIP));
        Path neither = write("d.json", "{\"rows\": []}");
        DatasetException e = assertThrows(DatasetException.class, () -> DatasetLoader.load(neither, DatasetFormat.AUTO, BadRowPolicy.SKIP));
        assertTrue(e.getMessage().contains("no \"data\" or \"train\" array"), e.getMessage());
    }

    @Test
    void invalidJsonFileIsRefusedWhateverThePolicy() throws IOException {
        Path f = write("bad.json", "[{\"text\": \"a\"},\n {\"text\": ]");
        DatasetException e = assertThrows(DatasetException.class, () -> DatasetLoader.load(f, DatasetFormat.AUTO, BadRowPolicy.SKIP));
        assertTrue(e.getMessage().startsWith("bad.json: invalid JSON at line 2"), e.getMessage());
        Path scalar = write("scalar.json", "\"just a string\"");
        assertThrows(DatasetException.class, () -> DatasetLoader.load(scalar, DatasetFormat.AUTO, BadRowPolicy.SKIP));
    }

    @Test
    void autoDetectsEachFormat() throws IOException {
        Path alpaca = write("alpaca.jsonl", lines("{\"instruction\":\"i\",\"output\":\"o\"}"));
        Path chat = write("chat.jsonl", lines("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":\"yo\"}]}"));
        Path text = write("text.jsonl", lines("{\"text\":\"plain\"}"));
        assertInstanceOf(AlpacaRecord.class, DatasetLoader.load(alpaca, DatasetFormat.AUTO, BadRowPolicy.FAIL).records().getFirst());
        assertEquals(new ChatRecord(1, List.of(new Message("user", "hi"), new Message("assistant", "yo"))),
                DatasetLoader.load(chat, DatasetFormat.AUTO, BadRowPolicy.FAIL).records().getFirst());
        assertEquals(new TextRecord(1, "plain"), DatasetLoader.load(text, DatasetFormat.AUTO, BadRowPolicy.FAIL).records().getFirst());
    }

    @Test
    void autoDetectsFromTheFirstValidRowAndHoldsTheFileToIt() throws IOException {
        Path f = write("data.jsonl", lines(
                "{\"what\":\"ever\"}",                               // 1 no known fields
                "{\"text\":\"\"}",                                   // 2 looks like text, but blank
                "{\"instruction\":\"i\",\"output\":\"o\"}",         // 3 first valid: alpaca
                "{\"text\":\"a text row\"}",                         // 4 not alpaca
                "{\"instruction\":\"j\",\"output\":\"p\"}"));        // 5 ok
        LoadedDataset d = DatasetLoader.load(f, DatasetFormat.AUTO, BadRowPolicy.SKIP);
        assertEquals(List.of(new AlpacaRecord(3, "i", "", "o"), new AlpacaRecord(5, "j", "", "p")), d.records());
        assertEquals(3, d.skipped());
        assertTrue(d.problems().get(0).startsWith("data.jsonl:1: cannot tell the row format"), d.problems().get(0));
        assertEquals("data.jsonl:2: field \"text\" must not be empty", d.problems().get(1));
        assertEquals("data.jsonl:4: missing field \"instruction\" (rows of this file are alpaca, detected at line 3)", d.problems().get(2));
    }

    @Test
    void explicitFormatRejectsOtherRows() throws IOException {
        Path f = write("data.jsonl", lines("{\"instruction\":\"i\",\"output\":\"o\"}"));
        LoadedDataset d = DatasetLoader.load(f, DatasetFormat.TEXT, BadRowPolicy.SKIP);
        assertEquals(List.of(), d.records());
        assertEquals(List.of("data.jsonl:1: missing field \"text\""), d.problems());
    }

    @Test
    void shareGptConversationsMapToRoles() throws IOException {
        Path f = write("sharegpt.json", """
                [{"conversations": [
                    {"from": "system", "value": "Be brief."},
                    {"from": "human", "value": "Hi"},
                    {"from": "gpt", "value": "Hello"}]},
                 {"conversations": [{"from": "human", "value": "Hi"}, {"from": "tool", "value": "{}"}, {"from": "gpt", "value": "x"}]}]
                """);
        LoadedDataset d = DatasetLoader.load(f, DatasetFormat.AUTO, BadRowPolicy.SKIP);
        assertEquals(List.of(new ChatRecord(1, List.of(new Message("system", "Be brief."), new Message("user", "Hi"),
                new Message("assistant", "Hello")))), d.records());
        assertEquals(List.of("sharegpt.json:2: field \"conversations[1].from\" must be one of human, gpt, system (got \"tool\")"), d.problems());
    }

    @Test
    void chatRowsAreValidated() throws IOException {
        Path f = write("chat.jsonl", lines(
                "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":\"yo\"}]}",
                "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
                "{\"messages\":[{\"role\":\"tool\",\"content\":\"x\"},{\"role\":\"assistant\",\"content\":\"yo\"}]}",
                "{\"messages\":[{\"role\":\"user\",\"content\":[\"parts\"]},{\"role\":\"assistant\",\"content\":\"yo\"}]}",
                "{\"messages\":[]}",
                "{\"messages\":\"hi\"}",
                "{\"messages\":[\"hi\"]}",
                "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":\"\"}]}",
                "{\"messages\":[{\"role\":\"system\",\"content\":\"\"},{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":\"yo\"}]}"));
        LoadedDataset d = DatasetLoader.load(f, DatasetFormat.CHAT, BadRowPolicy.SKIP);
        assertEquals(2, d.records().size(), "an empty system prompt is a message transformers renders");
        assertEquals(List.of(
                "chat.jsonl:2: field \"messages\" has no assistant message to train on",
                "chat.jsonl:3: field \"messages[0].role\" must be one of system, user, assistant (got \"tool\")",
                "chat.jsonl:4: field \"messages[0].content\" must be a string (got an array)",
                "chat.jsonl:5: field \"messages\" must not be empty",
                "chat.jsonl:6: field \"messages\" must be an array (got a string)",
                "chat.jsonl:7: field \"messages[0]\" must be an object (got a string)",
                "chat.jsonl:8: field \"messages[1].content\" must not be empty"), d.problems());
    }

    @Test
    void emptyFileAndBom() throws IOException {
        assertEquals(new LoadedDataset(List.of(), 0, List.of()),
                DatasetLoader.load(write("empty.jsonl", ""), DatasetFormat.AUTO, BadRowPolicy.FAIL));
        Path bom = dir.resolve("bom.jsonl");
        Files.write(bom, ("\uFEFF{\"text\":\"t\"}\n").getBytes(StandardCharsets.UTF_8));
        assertEquals(List.of(new TextRecord(1, "t")), DatasetLoader.load(bom, DatasetFormat.AUTO, BadRowPolicy.FAIL).records());
    }

    @Test
    void unsupportedOrMissingFile() throws IOException {
        Path csv = write("data.csv", "a,b\n");
        assertTrue(assertThrows(DatasetException.class, () -> DatasetLoader.load(csv, DatasetFormat.AUTO, BadRowPolicy.SKIP))
                .getMessage().contains("expected .jsonl"));
        assertThrows(DatasetException.class, () -> DatasetLoader.load(dir.resolve("missing.jsonl"), DatasetFormat.AUTO, BadRowPolicy.SKIP));
    }

    @Test
    void sizeBoundsAreEnforced() throws IOException {
        Path f = write("data.jsonl", lines("{\"text\":\"short\"}", "{\"text\":\"" + "x".repeat(200) + "\"}"));
        DatasetException line = assertThrows(DatasetException.class,
                () -> DatasetLoader.load(f, DatasetFormat.AUTO, BadRowPolicy.SKIP, 1 << 20, 100));
        assertEquals("data.jsonl:2: line is longer than the 100 bytes limit; is this really a JSONL file?", line.getMessage());
        DatasetException file = assertThrows(DatasetException.class,
                () -> DatasetLoader.load(f, DatasetFormat.AUTO, BadRowPolicy.SKIP, 50, 100));
        assertTrue(file.getMessage().startsWith("data.jsonl: file is "), file.getMessage());
        assertEquals(2L << 30, DatasetLoader.MAX_FILE_BYTES);
        assertEquals(64 << 20, DatasetLoader.MAX_LINE_BYTES);
    }

    @Test
    void problemListIsCappedButTheCountIsExact() throws IOException {
        StringBuilder sb = new StringBuilder();
        int bad = DatasetLoader.MAX_REPORTED_PROBLEMS + 5;
        for (int i = 0; i < bad; i++) sb.append("{\"text\":1}\n");
        sb.append("{\"text\":\"ok\"}\n");
        LoadedDataset d = DatasetLoader.load(write("many.jsonl", sb.toString()), DatasetFormat.TEXT, BadRowPolicy.SKIP);
        assertEquals(1, d.records().size());
        assertEquals(bad, d.skipped());
        assertEquals(DatasetLoader.MAX_REPORTED_PROBLEMS + 1, d.problems().size());
        assertEquals("many.jsonl: ... and 5 more bad rows skipped (only the first 1000 are listed)", d.problems().getLast());
    }
}
