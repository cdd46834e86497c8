package dev.jsloth.data;

import dev.jsloth.tokenizer.Tokenizer;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A chat row's masks placed from the tokenizer's added tokens ({@link Tokenizer#prefixes}: each assistant boundary
 * encodes only the text since the last special token) are those of encoding every prefix from the start, on random
 * conversations in templates whose turns are delimited by special tokens and in one whose turns are not.
 */
class ExampleBuilderPrefixesTest {
    private static final String[] WORDS = {"the", "sloth", "hangs", "naïve", "日本", "🦥", "42", "don't", "\n", "  ", "x", "café"};

    @Test
    void masksFromAddedTokensEqualThoseFromWholePrefixes() throws Exception {
        Tokenizer tok = Tokenizer.load(dev.jsloth.GoldenFixtures.tokenizer("tok-bytelevel"));
        List<ChatTemplate> templates = List.of(
                ChatTemplate.of("{% for m in messages %}<|begin_of_text|>{{ m['role'] }}\n{{ m['content'] }}<|end_of_text|>{% endfor %}"
                        + "{% if add_generation_prompt %}<|begin_of_text|>assistant\n{% endif %}", "<|begin_of_text|>", "<|end_of_text|>"),
                ChatTemplate.of("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}<|end_of_text|>{% endfor %}"
                        + "{% if add_generation_prompt %}assistant:{% endif %}", "<|begin_of_text|>", "<|end_of_text|>"),
                ChatTemplate.builtin("chatml"));
        Random r = new Random(7);
        int trained = 0;
        for (ChatTemplate t : templates) {
            ExampleBuilder fast = new ExampleBuilder(tok, t, true, false, -1);
            ExampleBuilder slow = new ExampleBuilder(tok::encode, t, true, false, -1); // the default: each prefix encoded whole
            for (int c = 0; c < 30; c++) {
                List<Message> ms = new ArrayList<>();
                if (r.nextBoolean()) ms.add(new Message("system", text(r)));
                for (int turn = 1 + r.nextInt(6); turn > 0; turn--) {
                    ms.add(new Message("user", text(r)));
                    ms.add(new Message("assistant", text(r)));
                }
                ChatRecord row = new ChatRecord(c + 1, ms);
                Example a = fast.build(row), b = slow.build(row);
                assertArrayEquals(b.inputIds(), a.inputIds());
                assertArrayEquals(b.labels(), a.labels(), "row " + ms);
                trained += a.trainedTokens();
            }
        }
        assertTrue(trained > 0);
    }

    private static String text(Random r) {
        StringBuilder sb = new StringBuilder();
        for (int i = r.nextInt(12); i >= 0; i--) sb.append(r.nextBoolean() ? " " : "").append(WORDS[r.nextInt(WORDS.length)]);
        return sb.toString();
    }
}
