package dev.jsloth.data;

import org.junit.jupiter.api.Test;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.IntStream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Token ids and completion-only masks for alpaca, chat (built-in and official templates) and text rows. */
class ExampleBuilderTest {
    static final ByteTokenizer LLAMA2_STYLE = new ByteTokenizer("<s>");          // BOS <s> = 256, EOS </s> = 257
    static final ByteTokenizer LLAMA3_STYLE = new ByteTokenizer("<|begin_of_text|>");
    static final ByteTokenizer QWEN_STYLE = new ByteTokenizer(null);             // no BOS
    static final int EOS = 257;
    static final int IGNORE = Example.IGNORE;

    static final ChatRecord TWO_TURNS = new ChatRecord(3, List.of(
            new Message("system", "You are terse."),
            new Message("user", "Hi"),
            new Message("assistant", "Hello."),
            new Message("user", "Bye"),
            new Message("assistant", "  Bye!  ")));

    static int[] bytes(String s) {
        byte[] b = s.getBytes(StandardCharsets.UTF_8);
        return IntStream.range(0, b.length).map(i -> b[i] & 0xff).toArray();
    }

    static int[] concat(int[]... parts) {
        return IntStream.range(0, parts.length).flatMap(i -> IntStream.of(parts[i])).toArray();
    }

    static int[] ignored(int n) {
        return IntStream.range(0, n).map(i -> IGNORE).toArray();
    }

    /** Every label is IGNORE or equal to its id. */
    static void assertLabelsConsistent(Example e) {
        for (int i = 0; i < e.length(); i++)
            assertTrue(e.labels()[i] == IGNORE || e.labels()[i] == e.inputIds()[i], "label " + i);
    }

    @Test
    void alpacaCompletionOnlyTrainsTheOutputAndEos() throws Exception {
        Example e = new ExampleBuilder(LLAMA2_STYLE, null, true, true, EOS).build(new AlpacaRecord(1, "Add.", "1+1", "2"));
        int[] prompt = concat(new int[]{256}, bytes(AlpacaPrompt.prompt("Add.", "1+1")));
        assertArrayEquals(concat(prompt, bytes("2"), new int[]{EOS}), e.inputIds());
        assertArrayEquals(concat(ignored(prompt.length), bytes("2"), new int[]{EOS}), e.labels());
        assertEquals(2, e.trainedTokens());
    }

    @Test
    void alpacaFullTrainingAndNoEos() throws Exception {
        Example full = new ExampleBuilder(LLAMA2_STYLE, null, false, true, EOS).build(new AlpacaRecord(1, "Add.", "", "2"));
        assertArrayEquals(full.inputIds(), full.labels());
        Example noEos = new ExampleBuilder(LLAMA2_STYLE, null, true, false, -1).build(new AlpacaRecord(1, "Add.", "", "2"));
        assertArrayEquals(concat(new int[]{256}, bytes(AlpacaPrompt.prompt("Add.", "")), bytes("2")), noEos.inputIds());
    }

    @Test
    void textTrainsEverything() throws Exception {
        for (boolean completionOnly : new boolean[]{true, false}) {
            Example e = new ExampleBuilder(LLAMA2_STYLE, null, completionOnly, true, EOS).build(new TextRecord(1, "héllo"));
            assertArrayEquals(concat(new int[]{256}, bytes("héllo"), new int[]{EOS}), e.inputIds());
            assertArrayEquals(e.inputIds(), e.labels());
        }
    }

    @Test
    void chatmlMaskIsExact() throws Exception {
        ChatRecord r = new ChatRecord(1, List.of(new Message("user", "a"), new Message("assistant", "b")));
        Example e = new ExampleBuilder(QWEN_STYLE, ChatTemplate.builtin("chatml"), true, true, EOS).build(r);
        int imStart = QWEN_STYLE.id("<|im_start|>");
        int imEnd = QWEN_STYLE.id("<|im_end|>");
        int[] prompt = concat(new int[]{imStart}, bytes("user\na"), new int[]{imEnd}, bytes("\n"), new int[]{imStart}, bytes("assistant\n"));
        int[] answer = concat(bytes("b"), new int[]{imEnd}, bytes("\n"));
        assertArrayEquals(concat(prompt, answer), e.inputIds());
        assertArrayEquals(concat(ignored(prompt.length), answer), e.labels());
    }

    @Test
    void llama3BuiltinMultiTurnWithoutDoubleBos() throws Exception {
        ChatTemplate t = ChatTemplate.builtin("llama3");
        Example e = new ExampleBuilder(LLAMA3_STYLE, t, true, true, EOS).build(TWO_TURNS);
        int bos = LLAMA3_STYLE.id("<|begin_of_text|>");
        assertEquals(bos, e.inputIds()[0]);
        assertTrue(e.inputIds()[1] != bos, "BOS added twice");
        assertEquals(t.render(TWO_TURNS.messages(), false), LLAMA3_STYLE.decode(e.inputIds()));
        assertEquals(List.of("Hello.<|eot_id|>", "  Bye!  <|eot_id|>"), LLAMA3_STYLE.trainedRuns(e));
        assertLabelsConsistent(e);
    }

    /** A generation prompt is encoded as training encodes a conversation's start: one BOS, whoever writes it. */
    @Test
    void generationPromptsGetOneBos() throws Exception {
        List<Message> ask = List.of(new Message("user", "Hi"));
        ChatTemplate llama3 = ChatTemplate.builtin("llama3"); // writes {{ bos_token }} itself
        int[] ids = ExampleBuilder.encodeRendered(LLAMA3_STYLE, llama3, llama3.render(ask, true));
        int bos = LLAMA3_STYLE.id("<|begin_of_text|>");
        assertEquals(bos, ids[0]);
        assertTrue(ids[1] != bos, "BOS added twice");
        ChatTemplate chatml = ChatTemplate.builtin("chatml"); // writes none: the tokenizer's is added
        int[] plain = ExampleBuilder.encodeRendered(LLAMA2_STYLE, chatml, chatml.render(ask, true));
        assertEquals(LLAMA2_STYLE.id("<s>"), plain[0]);
        assertEquals(chatml.render(ask, true), LLAMA2_STYLE.decode(java.util.Arrays.copyOfRange(plain, 1, plain.length)));
    }

    @Test
    void chatWithoutBosInTextGetsTheTokenizersBos() throws Exception {
        Example e = new ExampleBuilder(LLAMA2_STYLE, ChatTemplate.builtin("chatml"), true, true, EOS).build(TWO_TURNS);
        assertEquals(256, e.inputIds()[0]);
        assertEquals(IGNORE, e.labels()[0]);
        assertEquals(1, IntStream.of(e.inputIds()).filter(id -> id == 256).count());
        assertEquals(List.of("Hello.<|im_end|>\n", "  Bye!  <|im_end|>\n"), LLAMA2_STYLE.trainedRuns(e));
    }

    @Test
    void llama31OfficialTemplateMasks() throws Exception {
        ChatTemplate t = ChatTemplateOfficialTest.llama31();
        Example e = new ExampleBuilder(LLAMA3_STYLE, t, true, true, EOS).build(TWO_TURNS);
        assertEquals(1, IntStream.of(e.inputIds()).filter(id -> id == LLAMA3_STYLE.id("<|begin_of_text|>")).count());
        assertEquals(t.render(TWO_TURNS.messages(), false), LLAMA3_STYLE.decode(e.inputIds()));
        // the template trims message content; the trained text is what it rendered
        assertEquals(List.of("Hello.<|eot_id|>", "Bye!<|eot_id|>"), LLAMA3_STYLE.trainedRuns(e));
        assertLabelsConsistent(e);
    }

    @Test
    void qwen25OfficialTemplateMasks() throws Exception {
        ChatTemplate t = ChatTemplateOfficialTest.qwen25();
        Example e = new ExampleBuilder(QWEN_STYLE, t, true, false, -1).build(TWO_TURNS);
        assertEquals(t.render(TWO_TURNS.messages(), false), QWEN_STYLE.decode(e.inputIds()));
        assertEquals(List.of("Hello.<|im_end|>\n", "  Bye!  <|im_end|>\n"), QWEN_STYLE.trainedRuns(e));
        assertEquals(QWEN_STYLE.id("<|im_start|>"), e.inputIds()[0]);
        assertLabelsConsistent(e);
    }

    @Test
    void mistralTrainsContentAndEos() throws Exception {
        ChatTemplate t = ChatTemplate.of(ChatTemplateOfficialTest.MISTRAL, "<s>", "</s>");
        ChatRecord r = new ChatRecord(1, ChatTemplateOfficialTest.NO_SYSTEM);
        Example e = new ExampleBuilder(LLAMA2_STYLE, t, true, true, EOS).build(r);
        assertEquals(1, IntStream.of(e.inputIds()).filter(id -> id == 256).count());
        assertEquals(List.of("Hi there.</s>", "Fine, thanks.</s>"), LLAMA2_STYLE.trainedRuns(e));
    }

    @Test
    void maskIsIgnoreExactlyOutsideAssistantText() throws Exception {
        ChatTemplate t = ChatTemplate.builtin("chatml");
        Example e = new ExampleBuilder(QWEN_STYLE, t, true, false, -1).build(TWO_TURNS);
        // rebuild the expectation from the rendered text: trained exactly inside "CONTENT<|im_end|>\n" of assistant turns
        String full = t.render(TWO_TURNS.messages(), false);
        List<Integer> expected = new ArrayList<>();
        String[] parts = full.split("(?=<\\|im_start\\|>)");
        for (String part : parts) {
            int[] ids = QWEN_STYLE.encode(part, false);
            String header = "<|im_start|>assistant\n";
            int trainedFrom = part.startsWith(header) ? QWEN_STYLE.encode(header, false).length : ids.length;
            for (int i = 0; i < ids.length; i++) expected.add(i >= trainedFrom ? ids[i] : IGNORE);
        }
        assertArrayEquals(expected.stream().mapToInt(Integer::intValue).toArray(), e.labels());
    }

    @Test
    void notCompletionOnlyTrainsEveryChatToken() throws Exception {
        Example e = new ExampleBuilder(LLAMA3_STYLE, ChatTemplate.builtin("llama3"), false, true, EOS).build(TWO_TURNS);
        assertArrayEquals(e.inputIds(), e.labels());
    }

    @Test
    void conversationStartingWithTheAssistant() throws Exception {
        ChatRecord r = new ChatRecord(1, List.of(new Message("assistant", "x"), new Message("user", "y")));
        Example e = new ExampleBuilder(LLAMA2_STYLE, ChatTemplate.builtin("chatml"), true, true, EOS).build(r);
        assertEquals(256, e.inputIds()[0]);
        assertEquals(List.of("x<|im_end|>\n"), LLAMA2_STYLE.trainedRuns(e));
    }

    @Test
    void templateThatRewritesEarlierTurnsIsRefused() throws Exception {
        ChatTemplate counting = ChatTemplate.of("{{ messages|length }}:{% for m in messages %}{{ m.content }};{% endfor %}", null, null);
        DatasetException e = assertThrows(DatasetException.class,
                () -> new ExampleBuilder(QWEN_STYLE, counting, true, false, -1).build(TWO_TURNS));
        assertTrue(e.getMessage().startsWith("line 3: the chat template cannot be rendered incrementally"), e.getMessage());
    }

    @Test
    void templateErrorsNameTheRow() throws Exception {
        ChatTemplate mistral = ChatTemplate.of(ChatTemplateOfficialTest.MISTRAL, "<s>", "</s>");
        DatasetException e = assertThrows(DatasetException.class,
                () -> new ExampleBuilder(LLAMA2_STYLE, mistral, true, true, EOS).build(TWO_TURNS));
        assertTrue(e.getMessage().startsWith("line 3: rendering the conversation failed: chat template raised an exception: "
                                             + "Conversation roles must alternate"), e.getMessage());
        assertThrows(DatasetException.class, () -> new ExampleBuilder(LLAMA2_STYLE, null, true, true, EOS).build(TWO_TURNS));
        assertThrows(IllegalArgumentException.class, () -> new ExampleBuilder(LLAMA2_STYLE, null, true, true, -1));
    }

    @Test
    void exampleRecordChecksLengths() {
        assertThrows(IllegalArgumentException.class, () -> new Example(new int[2], new int[3]));
        assertEquals(new Example(new int[]{1, 2}, new int[]{IGNORE, 2}), new Example(new int[]{1, 2}, new int[]{IGNORE, 2}));
    }
}
