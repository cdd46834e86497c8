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
        PreTokenizedString pts = added.extractAndNormalize(UnicodeText.wellFormed(text), normalizer);
        if (preTokenizer != null) {
            preTokenizer.preTokenize(pts);
        }
        NormalizedString.IntList ids = new NormalizedString.IntList(text.length());
        for (PreTokenizedString.Split split : pts.splits()) {
            if (split.isToken()) {
                ids.add(split.tokenId());
            } else {
                ids.addAll(model.tokenize(split.text().get()));
            }
        }
        int[] out = ids.toArray();
        return postProcessor == null ? out : postProcessor.process(out, addSpecialTokens);
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
