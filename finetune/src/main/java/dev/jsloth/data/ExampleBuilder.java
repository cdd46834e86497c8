package dev.jsloth.data;

import dev.jsloth.tokenizer.Tokenizer;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * Tokenizes {@link Record}s into training {@link Example}s, with labels that say which tokens are trained.
 *
 * <ul>
 *   <li><b>Alpaca</b>: the tokenizer's special prefix (BOS), then {@code prompt + output} tokenized as one text, as
 *       TRL tokenizes a prompt and its completion; the tokens after those of the prompt alone (their longest common
 *       prefix) are the output's. Then EOS if {@code addEos}. Completion-only trains the output (and EOS), not the
 *       prompt.</li>
 *   <li><b>Chat</b>: the conversation rendered by the chat template and tokenized as one text without added special
 *       tokens, as transformers' {@code apply_chat_template(tokenize=True)} does (the template writes the BOS it wants:
 *       Llama 3's and Mistral's do, ChatML's and Zephyr's do not). The text of each assistant turn, from the end of the
 *       generation prompt before it to the end of the turn (including end-of-turn tokens the template writes, such as
 *       {@code <|eot_id|>} or {@code <|im_end|>}), is found by rendering the conversation up to that turn with and
 *       without the generation prompt; its tokens are those past the tokens of the text before it (longest common
 *       prefix), up to those of the text through it. Tokenizing segment by segment instead gave SentencePiece-style
 *       tokenizers (Llama 2, TinyLlama, Mistral) an extra {@code ▁} at the start of every segment. Completion-only
 *       trains the assistant turns only. Chat rows end as the template ends them: {@code addEos} does not apply.</li>
 *   <li><b>Text</b>: the special prefix, {@code encode(text, false)}, then EOS if {@code addEos}; every token is
 *       trained. (Only the prefix of the tokenizer's post-processor is used: one that also appends EOS put it in the
 *       middle of an Alpaca example and twice at the end of a text.)</li>
 * </ul>
 *
 * With {@code completionOnly == false}, every label equals its input id.
 */
public final class ExampleBuilder {
    /** Text to ids, as {@link Tokenizer#encode(String, boolean)} does it. */
    @FunctionalInterface
    interface Encoder {
        int[] encode(String text, boolean addSpecialTokens);

        /** As {@link Tokenizer#prefixes}; this default encodes each prefix from the start. */
        default Tokenizer.Prefixes prefixes(String text) {
            int[] ids = encode(text, false);
            return new Tokenizer.Prefixes() {
                @Override
                public int[] ids() {
                    return ids.clone();
                }

                @Override
                public int agreement(int end) {
                    return end >= text.length() ? ids.length : commonPrefix(encode(text.substring(0, end), false), ids);
                }
            };
        }
    }

    /** A tokenizer as an {@link Encoder}, its prefixes found from the added tokens ({@link Tokenizer#prefixes}). */
    static Encoder of(Tokenizer tok) {
        return new Encoder() {
            @Override
            public int[] encode(String text, boolean addSpecialTokens) {
                return tok.encode(text, addSpecialTokens);
            }

            @Override
            public Tokenizer.Prefixes prefixes(String text) {
                return tok.prefixes(text);
            }
        };
    }

    private final Encoder encoder;
    private final ChatTemplate template;
    private final boolean completionOnly;
    private final boolean addEos;
    private final int eosId;
    private final int[] specialPrefix; // the tokenizer's special tokens before a text (BOS)

    /**
     * @param tok            the model's tokenizer
     * @param template       the chat template for chat rows; may be null if no chat rows are built
     * @param completionOnly train only responses (alpaca output, assistant turns) rather than every token
     * @param addEos         append {@code eosId} after alpaca outputs and texts
     * @param eosId          the EOS token id (ignored unless {@code addEos})
     */
    public ExampleBuilder(Tokenizer tok, ChatTemplate template, boolean completionOnly, boolean addEos, int eosId) {
        this(of(tok), template, completionOnly, addEos, eosId);
    }

    ExampleBuilder(Encoder encoder, ChatTemplate template, boolean completionOnly, boolean addEos, int eosId) {
        if (addEos && eosId < 0) throw new IllegalArgumentException("addEos needs an EOS token id, got " + eosId);
        this.encoder = encoder;
        this.specialPrefix = specialPrefixOf(encoder);
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
        out.add(specialPrefix, !completionOnly);
        String prompt = AlpacaPrompt.prompt(a.instruction(), a.input());
        segmented(out, prompt + a.output(), List.of(prompt.length(), prompt.length() + a.output().length()), List.of(!completionOnly, true));
        if (addEos) out.add(new int[]{eosId}, true);
        return out.example();
    }

    private Example text(TextRecord t) {
        Tokens out = new Tokens();
        out.add(specialPrefix, true);
        out.add(encoder.encode(t.text(), false), true);
        if (addEos) out.add(new int[]{eosId}, true);
        return out.example();
    }

    /**
     * {@code full} tokenized once and labelled by pieces: piece i is the text before {@code ends[i]} (after the piece
     * before it) and is trained when {@code trained[i]}. Its tokens are those past the tokens of the text before it,
     * as far as the tokens of {@code full[0, ends[i])} on its own agree with those of {@code full}: a token that a merge
     * makes across a boundary goes with the piece it ends in.
     */
    private void segmented(Tokens out, String full, List<Integer> ends, List<Boolean> trained) {
        Tokenizer.Prefixes prefixes = encoder.prefixes(full);
        int[] ids = prefixes.ids();
        int from = 0;
        for (int i = 0; i < ends.size(); i++) {
            int end = ends.get(i);
            int to = end >= full.length() ? ids.length : Math.max(from, prefixes.agreement(end));
            out.add(Arrays.copyOfRange(ids, from, to), trained.get(i));
            from = to;
        }
        if (from < ids.length) out.add(Arrays.copyOfRange(ids, from, ids.length), trained.getLast());
    }

    private static int commonPrefix(int[] a, int[] b) {
        int n = Math.min(a.length, b.length), i = 0;
        while (i < n && a[i] == b[i]) i++;
        return i;
    }

    /**
     * The special tokens the tokenizer's post-processor puts before a text (BOS), without any it puts after it: found by
     * encoding a one-character text with and without special tokens.
     */
    private static int[] specialPrefixOf(Encoder encoder) {
        int[] with = encoder.encode("a", true), plain = encoder.encode("a", false);
        for (int i = 0; i + plain.length <= with.length; i++)
            if (Arrays.equals(with, i, i + plain.length, plain, 0, plain.length)) return Arrays.copyOf(with, i);
        return encoder.encode("", true);
    }

    private Example chat(ChatRecord c) throws DatasetException {
        if (template == null) throw new DatasetException("line " + c.line() + ": a chat row needs a chat template");
        String full = render(c, c.messages(), false, "the conversation");
        List<int[]> spans = assistantSpans(c, full);
        List<Integer> ends = new ArrayList<>();
        List<Boolean> trained = new ArrayList<>();
        int cursor = 0;
        for (int[] span : spans) {
            if (span[0] > cursor) {
                ends.add(span[0]);
                trained.add(!completionOnly);
            }
            ends.add(span[1]);
            trained.add(true);
            cursor = span[1];
        }
        if (cursor < full.length() || ends.isEmpty()) {
            ends.add(full.length());
            trained.add(!completionOnly);
        }
        Tokens out = new Tokens();
        segmented(out, full, ends, trained);
        return out.example();
    }

    /**
     * The tokens of a rendered chat prompt (for generation), as training tokenizes a conversation and as transformers'
     * {@code apply_chat_template(tokenize=True)} does: without added special tokens, the template having written the
     * BOS it wants (Llama 3's writes {@code {{ bos_token }}}; adding the tokenizer's as well gave two).
     */
    public static int[] encodeRendered(Tokenizer tok, String rendered) {
        return encodeRendered(tok::encode, rendered);
    }

    static int[] encodeRendered(Encoder encoder, String rendered) {
        return encoder.encode(rendered, false);
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
