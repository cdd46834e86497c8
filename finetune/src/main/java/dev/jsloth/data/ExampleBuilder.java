package dev.jsloth.data;

import dev.jsloth.tokenizer.Tokenizer;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * Tokenizes {@link Record}s into training {@link Example}s, with labels that say which tokens are trained.
 *
 * <ul>
 *   <li><b>Alpaca</b>: {@code encode(AlpacaPrompt.prompt(instruction, input), true)} (the tokenizer's post-processor
 *       adds BOS), then {@code encode(output, false)}, then EOS if {@code addEos}. Completion-only trains the output
 *       (and EOS), not the prompt.</li>
 *   <li><b>Chat</b>: the conversation rendered by the chat template. The text of each assistant turn, from the end of
 *       the generation prompt before it to the end of the turn (including end-of-turn tokens the template writes,
 *       such as {@code <|eot_id|>} or {@code <|im_end|>}), is found by rendering the conversation up to that turn with
 *       and without the generation prompt. The rendered text is tokenized segment by segment (other text and
 *       assistant text separately, then concatenated), so labels align exactly with the trained text.
 *       Completion-only trains the assistant segments only. BOS is added by the tokenizer (to the first segment)
 *       only when the rendered text does not already start with it (the template's BOS text, or the tokens the
 *       tokenizer would add). Chat rows end as the template ends them:
 *       {@code addEos} does not apply.</li>
 *   <li><b>Text</b>: {@code encode(text, true)}, then EOS if {@code addEos}; every token is trained.</li>
 * </ul>
 *
 * With {@code completionOnly == false}, every label equals its input id.
 */
public final class ExampleBuilder {
    /** Text to ids, as {@link Tokenizer#encode(String, boolean)} does it. */
    @FunctionalInterface
    interface Encoder {
        int[] encode(String text, boolean addSpecialTokens);
    }

    private final Encoder encoder;
    private final ChatTemplate template;
    private final boolean completionOnly;
    private final boolean addEos;
    private final int eosId;

    /**
     * @param tok            the model's tokenizer
     * @param template       the chat template for chat rows; may be null if no chat rows are built
     * @param completionOnly train only responses (alpaca output, assistant turns) rather than every token
     * @param addEos         append {@code eosId} after alpaca outputs and texts
     * @param eosId          the EOS token id (ignored unless {@code addEos})
     */
    public ExampleBuilder(Tokenizer tok, ChatTemplate template, boolean completionOnly, boolean addEos, int eosId) {
        this(tok::encode, template, completionOnly, addEos, eosId);
    }

    ExampleBuilder(Encoder encoder, ChatTemplate template, boolean completionOnly, boolean addEos, int eosId) {
        if (addEos && eosId < 0) throw new IllegalArgumentException("addEos needs an EOS token id, got " + eosId);
        this.encoder = encoder;
        this.template = template;
        this.completionOnly = completionOnly;
        this.addEos = addEos;
        this.eosId = eosId;
    }

    /**
     * Tokenizes one record.
     *
     * @throws DatasetException (with the record's line) if the chat template fails or cannot be rendered
     *                          incrementally, or a chat row is built without a template
     */
    public Example build(Record r) throws DatasetException {
        return switch (r) {
            case AlpacaRecord a -> alpaca(a);
            case ChatRecord c -> chat(c);
            case TextRecord t -> text(t);
        };
    }

    private Example alpaca(AlpacaRecord a) {
        Tokens out = new Tokens();
        out.add(encoder.encode(AlpacaPrompt.prompt(a.instruction(), a.input()), true), !completionOnly);
        out.add(encoder.encode(a.output(), false), true);
        if (addEos) out.add(new int[]{eosId}, true);
        return out.example();
    }

    private Example text(TextRecord t) {
        Tokens out = new Tokens();
        out.add(encoder.encode(t.text(), true), true);
        if (addEos) out.add(new int[]{eosId}, true);
        return out.example();
    }

    private Example chat(ChatRecord c) throws DatasetException {
        if (template == null) throw new DatasetException("line " + c.line() + ": a chat row needs a chat template");
        String full = render(c, c.messages(), false, "the conversation");
        List<int[]> spans = assistantSpans(c, full);
        Tokens out = new Tokens();
        // The first segment is never an assistant span (it may be empty), so an added BOS is never trained.
        int firstEnd = spans.isEmpty() ? full.length() : spans.getFirst()[0];
        out.add(firstSegment(full, full.substring(0, firstEnd)), !completionOnly);
        int cursor = firstEnd;
        for (int[] span : spans) {
            if (span[0] > cursor) out.add(encoder.encode(full.substring(cursor, span[0]), false), !completionOnly);
            out.add(encoder.encode(full.substring(span[0], span[1]), false), true);
            cursor = span[1];
        }
        if (cursor < full.length()) out.add(encoder.encode(full.substring(cursor), false), !completionOnly);
        return out.example();
    }

    /**
     * The tokens of the first segment: with the tokenizer's special prefix (BOS) unless the rendered text already
     * begins with it, judged by the template's BOS text or by the tokens themselves.
     */
    private int[] firstSegment(String full, String segment) {
        return withPrefixOnce(encoder, template, full, segment);
    }

    private static int[] withPrefixOnce(Encoder encoder, ChatTemplate template, String full, String segment) {
        int[] plain = encoder.encode(segment, false);
        if (template.bosToken().map(full::startsWith).orElse(false)) return plain;
        int[] prefix = encoder.encode("", true);
        if (prefix.length > 0 && plain.length >= prefix.length && Arrays.equals(plain, 0, prefix.length, prefix, 0, prefix.length))
            return plain;
        return encoder.encode(segment, true);
    }

    /**
     * The tokens of a rendered chat prompt (for generation), as training encodes a conversation's start: with the
     * tokenizer's special prefix (BOS) unless the rendered text already begins with it (Llama 3's template writes
     * {@code {{ bos_token }}} itself; encoding that with the prefix too gave two BOS tokens). Hugging Face's
     * {@code apply_chat_template(tokenize=True)} likewise adds no second one.
     */
    public static int[] encodeRendered(Tokenizer tok, ChatTemplate template, String rendered) {
        return encodeRendered(tok::encode, template, rendered);
    }

    static int[] encodeRendered(Encoder encoder, ChatTemplate template, String rendered) {
        return withPrefixOnce(encoder, template, rendered, rendered);
    }

    /**
     * The {@code [start, end)} character ranges of {@code full} that are assistant turns: for the assistant message
     * {@code i}, from the end of {@code render(messages[0..i), add_generation_prompt=true)} to the end of
     * {@code render(messages[0..i], add_generation_prompt=false)}. Both renders must be prefixes of {@code full}, in
     * order; a template for which they are not (it rewrites earlier turns as the conversation grows) is refused.
     */
    private List<int[]> assistantSpans(ChatRecord c, String full) throws DatasetException {
        List<Message> messages = c.messages();
        List<int[]> spans = new ArrayList<>();
        int cursor = 0;
        for (int i = 0; i < messages.size(); i++) {
            if (!messages.get(i).isAssistant()) continue;
            String before = render(c, messages.subList(0, i), true, "the prompt before message " + (i + 1));
            String through = i == messages.size() - 1 ? full
                    : render(c, messages.subList(0, i + 1), false, "the conversation up to message " + (i + 1));
            if (!full.startsWith(before) || !full.startsWith(through) || before.length() < cursor || through.length() < before.length())
                throw new DatasetException("line " + c.line() + ": the chat template cannot be rendered incrementally: rendering"
                        + " the conversation up to assistant message " + (i + 1) + " does not give a prefix of the whole"
                        + " conversation (the template changes earlier turns as later ones are added, e.g. it strips"
                        + " reasoning from past turns), so the assistant tokens cannot be located for masking");
            spans.add(new int[]{before.length(), through.length()});
            cursor = through.length();
        }
        return spans;
    }

    private String render(ChatRecord c, List<Message> messages, boolean addGenerationPrompt, String what) throws DatasetException {
        try {
            return template.render(messages, addGenerationPrompt);
        } catch (TemplateException e) {
            throw new DatasetException("line " + c.line() + ": rendering " + what + " failed: " + e.getMessage(), e);
        }
    }

    /** Growing ids and labels. */
    private static final class Tokens {
        private int[] ids = new int[256];
        private int[] labels = new int[256];
        private int size;

        void add(int[] tokens, boolean trained) {
            if (size + tokens.length > ids.length) {
                int capacity = Math.max(size + tokens.length, ids.length * 2);
                ids = Arrays.copyOf(ids, capacity);
                labels = Arrays.copyOf(labels, capacity);
            }
            for (int t : tokens) {
                ids[size] = t;
                labels[size] = trained ? t : Example.IGNORE;
                size++;
            }
        }

        Example example() {
            return new Example(Arrays.copyOf(ids, size), Arrays.copyOf(labels, size));
        }
    }
}
