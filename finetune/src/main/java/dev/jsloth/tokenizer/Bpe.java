package dev.jsloth.tokenizer;

import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * The BPE model of tokenizers: a vocabulary and ranked merges, applied to one pre-tokenized word at
 * a time.
 *
 * <p>A word starts as one symbol per character (unknown characters become their {@code <0xNN>}
 * byte tokens with {@code byte_fallback}, else the unknown token, consecutive ones fused with
 * {@code fuse_unk}). Merges are then applied lowest rank first, leftmost first, with a priority
 * queue over a linked list of symbols, so a word of n symbols costs O(n log n). Results for words
 * shorter than 256 UTF-8 bytes are cached.
 */
final class Bpe {
    private static final int CACHE_CAPACITY = 100_000;
    private static final int CACHE_MAX_WORD_BYTES = 256;

    private final Map<String, Integer> vocab;
    private final Map<Integer, String> vocabReverse;
    private final BpeMerges merges;
    private final String unkToken;
    private final String continuingSubwordPrefix;
    private final String endOfWordSuffix;
    private final boolean fuseUnk;
    private final boolean byteFallback;
    private final boolean ignoreMerges;
    private final float dropout;
    private final int[] byteFallbackIds;
    /**
     * The id of each single BMP character as a token (-1 if absent), when no subword prefix or
     * suffix changes how characters are looked up; null otherwise.
     */
    private final int[] charIds;
    private final Map<String, int[]> cache = new ConcurrentHashMap<>();

    private Bpe(Map<String, Integer> vocab, BpeMerges merges, String unkToken, String continuingSubwordPrefix,
                String endOfWordSuffix, boolean fuseUnk, boolean byteFallback, boolean ignoreMerges,
                float dropout) {
        this.vocab = vocab;
        this.vocabReverse = new HashMap<>(vocab.size() * 2);
        for (Map.Entry<String, Integer> e : vocab.entrySet()) {
            vocabReverse.putIfAbsent(e.getValue(), e.getKey());
        }
        this.merges = merges;
        this.unkToken = unkToken;
        this.continuingSubwordPrefix = continuingSubwordPrefix;
        this.endOfWordSuffix = endOfWordSuffix;
        this.fuseUnk = fuseUnk;
        this.byteFallback = byteFallback;
        this.ignoreMerges = ignoreMerges;
        this.dropout = dropout;
        this.byteFallbackIds = new int[256];
        for (int b = 0; b < 256; b++) {
            Integer id = vocab.get(String.format("<0x%02X>", b));
            byteFallbackIds[b] = id == null ? -1 : id;
        }
        if (continuingSubwordPrefix == null && endOfWordSuffix == null) {
            charIds = new int[0x10000];
            java.util.Arrays.fill(charIds, -1);
            for (Map.Entry<String, Integer> e : vocab.entrySet()) {
                String k = e.getKey();
                if (k.length() == 1 && !Character.isSurrogate(k.charAt(0))) {
                    charIds[k.charAt(0)] = e.getValue();
                }
            }
        } else {
            charIds = null;
        }
    }

    /** Parses a {@code model} object of type BPE. */
    static Bpe parse(Json json) throws TokenizerFormatException {
        Json vocabJson = json.require("vocab");
        Map<String, Integer> vocab = new HashMap<>();
        for (Map.Entry<String, Json> e : vocabJson.fields()) {
            vocab.put(e.getKey(), e.getValue().asNonNegativeInt());
        }
        String prefix = json.optString("continuing_subword_prefix", null);
        byte[] prefixBytes = prefix == null ? new byte[0] : UnicodeText.utf8(prefix);
        Json mergesJson = json.get("merges");
        List<Json> mergeList = mergesJson.isNull() ? List.of() : mergesJson.elements();
        BpeMerges merges = new BpeMerges(mergeList.size());
        for (int rank = 0; rank < mergeList.size(); rank++) {
            Json m = mergeList.get(rank);
            String a;
            String b;
            if (m.isString() && m.asString().startsWith("#version")) {
                continue; // a merges.txt header carried over: tokenizers skips it
            }
            if (m.isString()) {
                String[] parts = m.asString().split(" ", -1);
                if (parts.length != 2) {
                    throw m.error("expected a merge \"left right\" with exactly one space, found \""
                            + m.asString() + "\"");
                }
                a = parts[0];
                b = parts[1];
            } else if (m.isArray()) {
                List<Json> pair = m.elements();
                if (pair.size() != 2) {
                    throw m.error("expected a pair [left, right], found " + pair.size() + " elements");
                }
                a = pair.get(0).asString();
                b = pair.get(1).asString();
            } else {
                throw m.error("expected a merge as a string \"left right\" or a pair [left, right], found "
                        + m.describe());
            }
            Integer aId = vocab.get(a);
            Integer bId = vocab.get(b);
            if (aId == null || bId == null) {
                throw m.error("merge token '" + (aId == null ? a : b) + "' is not in the vocabulary");
            }
            String merged = a + stripPrefixBytes(b, prefixBytes.length);
            Integer newId = vocab.get(merged);
            if (newId == null) {
                throw m.error("merged token '" + merged + "' is not in the vocabulary");
            }
            merges.put(aId, bId, rank, newId);
        }
        Json dropoutJson = json.get("dropout");
        float dropout = 0f;
        if (!dropoutJson.isNull()) {
            if (!dropoutJson.node().isNumber()) {
                throw dropoutJson.error("expected a number, found " + dropoutJson.describe());
            }
            dropout = dropoutJson.node().floatValue();
            if (!(dropout >= 0f && dropout <= 1f)) {
                throw dropoutJson.error("dropout must be between 0 and 1");
            }
        }
        return new Bpe(vocab, merges, json.optString("unk_token", null), prefix,
                json.optString("end_of_word_suffix", null), json.bool("fuse_unk", false),
                json.bool("byte_fallback", false), json.bool("ignore_merges", false), dropout);
    }

    private static String stripPrefixBytes(String b, int prefixBytes) {
        if (prefixBytes == 0) {
            return b;
        }
        byte[] bytes = UnicodeText.utf8(b);
        if (bytes.length < prefixBytes) {
            return "";
        }
        return new String(bytes, prefixBytes, bytes.length - prefixBytes, java.nio.charset.StandardCharsets.UTF_8);
    }

    Integer tokenToId(String token) {
        return vocab.get(token);
    }

    String idToToken(int id) {
        return vocabReverse.get(id);
    }

    int maxId() {
        int max = -1;
        for (int id : vocabReverse.keySet()) {
            max = Math.max(max, id);
        }
        return max;
    }

    /** Entries in the model vocabulary (tokenizers' get_vocab_size for BPE). */
    int vocabSize() {
        return vocab.size();
    }

    String unkToken() {
        return unkToken;
    }

    /** The ids of one pre-tokenized word. */
    /** Whether a word always gives the same tokens (no BPE dropout). */
    boolean isDeterministic() {
        return dropout == 0f;
    }

    int[] tokenize(String word) {
        if (word.isEmpty()) {
            return new int[0];
        }
        boolean deterministic = dropout == 0f;
        if (ignoreMerges) {
            Integer id = vocab.get(word);
            if (id != null) {
                return new int[] {id};
            }
        }
        if (deterministic) {
            int[] hit = cache.get(word);
            if (hit != null) {
                return hit;
            }
        }
        int[] ids = mergeWord(word);
        if (deterministic && cache.size() < CACHE_CAPACITY && utf8LengthBelow(word, CACHE_MAX_WORD_BYTES)) {
            cache.putIfAbsent(word, ids);
        }
        return ids;
    }

    private static boolean utf8LengthBelow(String s, int limit) {
        int n = 0;
        for (int i = 0; i < s.length(); ) {
            int cp = s.codePointAt(i);
            n += UnicodeText.utf8Length(cp);
            if (n >= limit) {
                return false;
            }
            i += Character.charCount(cp);
        }
        return true;
    }

    /** Splits the word into initial symbols, then applies the merges. */
    private int[] mergeWord(String w) {
        BpeWord word = new BpeWord(w.length());
        int pendingUnk = -1;
        int pendingUnkLen = 0;
        int n = w.length();
        for (int i = 0; i < n; ) {
            int cp = w.codePointAt(i);
            int next = i + Character.charCount(cp);
            if (charIds != null && cp < 0x10000 && charIds[cp] >= 0) {
                if (pendingUnk >= 0) {
                    word.add(pendingUnk);
                    pendingUnk = -1;
                }
                word.add(charIds[cp]);
                i = next;
                continue;
            }
            boolean first = i == 0;
            boolean last = next >= n;
            String s = w.substring(i, next);
            int byteLen = UnicodeText.utf8Length(cp);
            if (!first && continuingSubwordPrefix != null) {
                s = continuingSubwordPrefix + s;
            }
            if (last && endOfWordSuffix != null) {
                s = s + endOfWordSuffix;
            }
            i = next;
            Integer id = vocab.get(s);
            if (id != null) {
                if (pendingUnk >= 0) {
                    word.add(pendingUnk);
                    pendingUnk = -1;
                }
                word.add(id);
                continue;
            }
            if (byteFallback && addByteFallback(word, s)) {
                continue; // like tokenizers, a pending unknown token stays pending
            }
            if (unkToken != null) {
                Integer unk = vocab.get(unkToken);
                if (unk == null) { // tokenizers' merge_word: UnkTokenOutOfVocabulary (an added token of that name does not count)
                    throw new IllegalArgumentException("unk_token \"" + unkToken + "\" is not in the model vocabulary,"
                            + " and the text has a character the vocabulary cannot spell (tokenizers fails on it too)");
                }
                if (pendingUnk >= 0 && fuseUnk) {
                    pendingUnkLen += byteLen;
                } else {
                    if (pendingUnk >= 0) {
                        word.add(pendingUnk);
                    }
                    pendingUnk = unk;
                    pendingUnkLen = byteLen;
                }
            }
        }
        if (pendingUnk >= 0) {
            word.add(pendingUnk);
        }
        return word.mergeAll(merges, dropout);
    }

    private boolean addByteFallback(BpeWord word, String s) {
        byte[] bytes = UnicodeText.utf8(s);
        for (byte b : bytes) {
            if (byteFallbackIds[b & 0xFF] < 0) {
                return false;
            }
        }
        for (byte b : bytes) {
            word.add(byteFallbackIds[b & 0xFF]);
        }
        return true;
    }
}
