package dev.jsloth.data;

import dev.jsloth.tokenizer.Tokenizer;
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

    /**
     * A generation prompt is tokenized as training tokenizes a conversation and as apply_chat_template(tokenize=True)
     * does: no added special tokens, so the BOS is the template's (one, where it writes one; none where it does not).
     */
    @Test
    void generationPromptsGetOneBos() throws Exception {
        List<Message> ask = List.of(new Message("user", "Hi"));
        ChatTemplate llama3 = ChatTemplate.builtin("llama3"); // writes {{ bos_token }} itself
        int[] ids = ExampleBuilder.encodeRendered(LLAMA3_STYLE, llama3.render(ask, true));
        int bos = LLAMA3_STYLE.id("<|begin_of_text|>");
        assertEquals(bos, ids[0]);
        assertTrue(ids[1] != bos, "BOS added twice");
        ChatTemplate chatml = ChatTemplate.builtin("chatml"); // writes none: none is added
        int[] plain = ExampleBuilder.encodeRendered(LLAMA2_STYLE, chatml.render(ask, true));
        assertEquals(0, IntStream.of(plain).filter(id -> id == LLAMA2_STYLE.id("<s>")).count());
        assertEquals(chatml.render(ask, true), LLAMA2_STYLE.decode(plain));
    }

    /** As apply_chat_template(tokenize=True): a template that writes no BOS gets none from the tokenizer either. */
    @Test
    void chatWithoutBosInTextGetsNoneAdded() throws Exception {
        Example e = new ExampleBuilder(LLAMA2_STYLE, ChatTemplate.builtin("chatml"), true, true, EOS).build(TWO_TURNS);
        assertEquals(0, IntStream.of(e.inputIds()).filter(id -> id == 256).count());
        assertEquals(ChatTemplate.builtin("chatml").render(TWO_TURNS.messages(), false), LLAMA2_STYLE.decode(e.inputIds()));
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

    /**
     * With a SentencePiece-style tokenizer (Metaspace prepending "▁" to a text's first piece; Llama 2, TinyLlama,
     * Mistral), an example's tokens are those of its whole text tokenized once, as TRL and apply_chat_template give them:
     * tokenizing prompt and response (or turns) one by one gave each piece's start its own "▁". Checked on the fixture
     * tokenizers whose pieces tokenize differently alone, for an Alpaca row and a chat row.
     */
    @Test
    void sentencePieceExamplesAreTheWholeTextTokenizedOnce() throws Exception {
        for (String fixture : new String[]{"spm-first", "spm-llama2-legacy", "spm-always-split"}) {
            java.nio.file.Path dir = java.nio.file.Path.of(ExampleBuilderTest.class.getResource("/fixtures/tok-variants/" + fixture).toURI());
            Tokenizer tok = Tokenizer.load(dir);
            int eos = 2;
            AlpacaRecord a = new AlpacaRecord(1, "Write two lines", "", "line2\nend");
            Example e = new ExampleBuilder(tok, null, true, true, eos).build(a);
            String prompt = AlpacaPrompt.prompt(a.instruction(), a.input());
            int[] whole = tok.encode(prompt + a.output(), true);
            assertEquals(whole.length + 1, e.inputIds().length, fixture);
            assertArrayEquals(whole, java.util.Arrays.copyOf(e.inputIds(), whole.length), fixture);
            assertEquals(eos, e.inputIds()[whole.length]);
            int trainedFrom = 0;
            while (e.labels()[trainedFrom] == IGNORE) trainedFrom++;
            int[] alone = tok.encode(prompt, true);
            int agree = 0;
            while (agree < alone.length && alone[agree] == whole[agree]) agree++;
            assertEquals(agree, trainedFrom, fixture + ": the prompt's own tokens are what is masked");
            assertTrue(trainedFrom > 20 && trainedFrom < whole.length, fixture + ": " + trainedFrom);

            ChatTemplate zephyr = ChatTemplate.of("{% for m in messages %}<|{{ m.role }}|>\n{{ m.content }}</s>\n{% endfor %}"
                    + "{% if add_generation_prompt %}<|assistant|>\n{% endif %}", "<s>", "</s>");
            Example c = new ExampleBuilder(tok, zephyr, true, true, eos).build(TWO_TURNS);
            String full = zephyr.render(TWO_TURNS.messages(), false);
            assertArrayEquals(tok.encode(full, false), c.inputIds(), fixture + ": the conversation tokenized once, no BOS added");
        }
    }
}
