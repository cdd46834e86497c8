package dev.jsloth.tokenizer;

import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.JsonLocation;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.OptionalInt;

/**
 * A Hugging Face {@code tokenizer.json} tokenizer, in pure Java, producing the same ids as the
 * {@code tokenizers} library.
 *
 * <p>Encoding runs the same pipeline as tokenizers: added tokens are cut out of the input first,
 * the rest is normalized, pre-tokenized into words, each word is encoded by the BPE model, and the
 * post-processor adds special tokens (such as BOS) when asked to. Byte-level BPE (GPT-2, Llama 3,
 * Qwen) and SentencePiece-style BPE with byte fallback (Llama 2, Mistral, TinyLlama) are supported;
 * anything the file asks for that is not supported is reported by {@link #load} as a
 * {@link TokenizerFormatException} naming the field.
 *
 * <p>The {@code truncation} and {@code padding} settings of the file are ignored: {@link #encode}
 * always returns the whole sequence, as {@code transformers} does by default.
 *
 * <p>Instances are immutable and safe to use from several threads.
 */
public final class Tokenizer {
    private static final ObjectMapper MAPPER = new ObjectMapper()
            .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS)
            .enable(JsonParser.Feature.STRICT_DUPLICATE_DETECTION);

    private final Bpe model;
    private final AddedVocabulary added;
    private final Normalizers.Normalizer normalizer;
    private final PreTokenizers.PreTokenizer preTokenizer;
    private final PostProcessor postProcessor;
    private final Decoders.Decoder decoder;
    private final int vocabSize;

    private Tokenizer(Bpe model, AddedVocabulary added, Normalizers.Normalizer normalizer,
                      PreTokenizers.PreTokenizer preTokenizer, PostProcessor postProcessor, Decoders.Decoder decoder) {
        this.model = model;
        this.added = added;
        this.normalizer = normalizer;
        this.preTokenizer = preTokenizer;
        this.postProcessor = postProcessor;
        this.decoder = decoder;
        this.vocabSize = Math.max(model.maxId(), added.maxId()) + 1;
    }

    /**
     * Loads a tokenizer.
     *
     * @param path a {@code tokenizer.json} file, or a directory containing one
     * @throws TokenizerFormatException if the file is not valid JSON, has a field of the wrong type
     *     or an inconsistent value, or uses a component that is not supported
     * @throws IOException if the file cannot be read
     */
    public static Tokenizer load(Path path) throws IOException {
        Path file = Files.isDirectory(path) ? path.resolve("tokenizer.json") : path;
        String name = file.toString();
        byte[] bytes = Files.readAllBytes(file);
        JsonNode root;
        try {
            root = MAPPER.readTree(bytes);
        } catch (JsonProcessingException e) {
            throw malformed(name, e);
        }
        if (root == null || root.isMissingNode()) {
            throw new TokenizerFormatException(name + ": <root>: the file is empty");
        }
        try {
            return fromJson(Json.root(name, root));
        } catch (RuntimeException e) {
            // Defensive: any unforeseen failure is still reported as a format problem of this file.
            throw new TokenizerFormatException(name + ": <root>: cannot be loaded: " + e, e);
        }
    }

    private static TokenizerFormatException malformed(String name, JsonProcessingException e) {
        String where = "<root>";
        if (e.getProcessor() instanceof JsonParser parser) {
            where = Json.pointerToPath(parser.getParsingContext().pathAsPointer());
        }
        JsonLocation loc = e.getLocation();
        String position = loc == null ? "" : " at line " + loc.getLineNr() + ", column " + loc.getColumnNr();
        return new TokenizerFormatException(name + ": " + where + ": malformed JSON" + position + ": "
                + e.getOriginalMessage(), e);
    }

    private static Tokenizer fromJson(Json root) throws TokenizerFormatException {
        root.requireObject();
        Json version = root.get("version");
        if (!version.isNull()) {
            version.asString();
        }
        Json modelJson = root.require("model");
        modelJson.requireObject();
        Json typeField = modelJson.get("type");
        String type = typeField.isNull() ? (modelJson.has("merges") ? "BPE" : null) : typeField.asString();
        if (!"BPE".equals(type)) {
            throw (typeField.isNull() ? modelJson : typeField).error(
                    "unsupported model type " + (type == null ? "(none)" : "\"" + type + "\"") + "; only BPE is supported");
        }
        Bpe model = Bpe.parse(modelJson);
        Normalizers.Normalizer normalizer = Normalizers.parse(root.get("normalizer"));
        PreTokenizers.PreTokenizer preTokenizer = PreTokenizers.parse(root.get("pre_tokenizer"));
        PostProcessor postProcessor = PostProcessor.parse(root.get("post_processor"));
        Decoders.Decoder decoder = Decoders.parse(root.get("decoder"));
        AddedVocabulary added = AddedVocabulary.parse(root.get("added_tokens"), model, normalizer);
        for (String ignored : new String[] {"truncation", "padding"}) {
            Json f = root.get(ignored);
            if (!f.isNull()) {
                f.requireObject();
            }
        }
        return new Tokenizer(model, added, normalizer, preTokenizer, postProcessor, decoder);
    }

    /**
     * Encodes a text.
     *
     * @param text the text; unpaired surrogates are encoded as U+FFFD
     * @param addSpecialTokens whether the post-processor adds its special tokens (such as BOS), as
     *     {@code add_special_tokens} in tokenizers
     * @return the token ids
     */
    public int[] encode(String text, boolean addSpecialTokens) {
        int[] out = plainIds(text, null);
        return postProcessor == null ? out : postProcessor.process(out, addSpecialTokens);
    }

    /**
     * The text's ids before post-processing; with {@code anchors} (start offsets, end offsets and token indices, each
     * an IntList), each added token that {@link AddedVocabulary#isPlainRawToken} is recorded there.
     */
    private int[] plainIds(String text, NormalizedString.IntList[] anchors) {
        PreTokenizedString pts = added.extractAndNormalize(UnicodeText.wellFormed(text), normalizer);
        if (preTokenizer != null) {
            preTokenizer.preTokenize(pts);
        }
        NormalizedString.IntList ids = new NormalizedString.IntList(text.length());
        for (PreTokenizedString.Split split : pts.splits()) {
            if (split.isToken()) {
                if (anchors != null && added.isPlainRawToken(split.tokenId())) { // raw: its text is the input's, unnormalized
                    anchors[0].add(split.text().originalStart());
                    anchors[1].add(split.text().originalStart() + split.text().length());
                    anchors[2].add(ids.size());
                }
                ids.add(split.tokenId());
            } else {
                ids.addAll(model.tokenize(split.text().get()));
            }
        }
        return ids.toArray();
    }

    /**
     * A text's ids and, for a cut anywhere in it, how many of those ids the text before the cut encodes to as well
     * ({@link #prefixes}).
     */
    public interface Prefixes {
        /** {@code encode(text, false)}. */
        int[] ids();

        /**
         * The length of the common prefix of {@code encode(text.substring(0, end), false)} and {@link #ids()}.
         *
         * @param end a cut in {@code [0, text.length()]}
         */
        int agreement(int end);
    }

    /**
     * The text's ids (no special tokens added) and the agreement of each of its prefixes with them, as {@code
     * encode(text.substring(0, end), false)} compared with {@code encode(text, false)} token by token, without encoding
     * each prefix from the start. Where an added token that is matched on the raw text and takes nothing around it
     * (a chat template's {@code <|eot_id|>} or {@code <|im_start|>}) ends at or before the cut, the text before it
     * encodes the same with or without what follows (added tokens split the text first; each piece between them is
     * normalized, pre-tokenized and encoded on its own, and the pieces after the first do not start the input), so
     * only the text from the last such token to the cut is encoded; with none before the cut, the whole prefix is. A
     * conversation's turn boundaries then cost the length of a turn each, not of the conversation so far. (Not with BPE
     * dropout, whose encodings differ from call to call: there each prefix is encoded whole.)
     *
     * @param text the text; unpaired surrogates are encoded as U+FFFD
     * @return its ids and their agreement with each prefix's
     */
    public Prefixes prefixes(String text) {
        NormalizedString.IntList[] anchors = {new NormalizedString.IntList(16), new NormalizedString.IntList(16), new NormalizedString.IntList(16)};
        int[] plain = plainIds(text, anchors);
        int[] out = postProcessor == null ? plain : postProcessor.process(plain, false);
        // a post-processor that changed the ids without special tokens would move them away from the anchors; with BPE
        // dropout no two encodings agree anyway, and each prefix is encoded whole as before
        boolean anchored = java.util.Arrays.equals(out, plain) && model.isDeterministic();
        int[] starts = anchors[0].toArray(), ends = anchors[1].toArray(), at = anchors[2].toArray();
        return new Prefixes() {
            @Override
            public int[] ids() {
                return out.clone();
            }

            @Override
            public int agreement(int end) {
                if (end < 0 || end > text.length())
                    throw new IndexOutOfBoundsException("cut " + end + " outside a text of " + text.length() + " characters");
                if (end == text.length()) return out.length;
                // the last anchor that ends at or before the cut (anchor ends increase)
                int lo = 0, hi = anchored ? ends.length : 0;
                while (lo < hi) {
                    int mid = (lo + hi) >>> 1;
                    if (ends[mid] <= end) lo = mid + 1;
                    else hi = mid;
                }
                if (lo > 0) {
                    int a = lo - 1;
                    // the text from the token on; it must start with the token (a check: should anything have joined
                    // it to what comes before, the whole prefix is encoded instead)
                    int[] tail = encode(text.substring(starts[a], end), false);
                    if (tail.length > 0 && tail[0] == out[at[a]]) return at[a] + common(tail, out, at[a]);
                }
                return common(encode(text.substring(0, end), false), out, 0);
            }
        };
    }

    /** The length of the common prefix of {@code a} and {@code b[at..]}. */
    private static int common(int[] a, int[] b, int at) {
        int n = Math.min(a.length, b.length - at), i = 0;
        while (i < n && a[i] == b[at + i]) i++;
        return i;
    }

    /**
     * Decodes ids back to text. Ids that are not in the vocabulary are skipped.
     *
     * @param ids the token ids
     * @param skipSpecialTokens whether special added tokens are left out
     * @return the text
     */
    public String decode(int[] ids, boolean skipSpecialTokens) {
        List<String> tokens = new ArrayList<>(ids.length);
        for (int id : ids) {
            String token = added.decodingForm(id);
            if (token == null) {
                token = model.idToToken(id);
            }
            if (token == null || (skipSpecialTokens && added.isSpecialContent(token))) {
                continue;
            }
            tokens.add(token);
        }
        return decoder == null ? String.join(" ", tokens) : decoder.decode(tokens);
    }

    /** The number of ids, added tokens included (the largest id plus one). */
    public int vocabSize() {
        return vocabSize;
    }

    /** The id of a token (added tokens first, then the model vocabulary). */
    public OptionalInt tokenToId(String token) {
        Integer id = added.tokenToId(token);
        if (id == null) {
            id = model.tokenToId(token);
        }
        return id == null ? OptionalInt.empty() : OptionalInt.of(id);
    }

    /** The token with this id, or null if there is none. */
    public String idToToken(int id) {
        String token = added.idToToken(id);
        return token != null ? token : model.idToToken(id);
    }

    /** Whether the id is a special added token (such as BOS or EOS). */
    public boolean isSpecial(int id) {
        return added.isSpecialId(id);
    }
}
