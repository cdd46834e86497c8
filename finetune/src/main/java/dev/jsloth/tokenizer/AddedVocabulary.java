package dev.jsloth.tokenizer;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * The {@code added_tokens} of a tokenizer: tokens matched in the raw input before anything else,
 * such as {@code <|begin_of_text|>} or {@code <s>}.
 *
 * <p>As in tokenizers, tokens with {@code normalized: false} are searched in the original text,
 * the others in the normalized text of what remains; the leftmost match wins and, among matches
 * starting at the same place, the longest. {@code single_word} rejects a match touching a word
 * character, {@code lstrip}/{@code rstrip} swallow the white space around the token.
 */
final class AddedVocabulary {
    /** One added token as declared in the file. */
    record AddedToken(int id, String content, boolean singleWord, boolean lstrip, boolean rstrip,
                      boolean normalized, boolean special) {
        AddedToken withId(int newId) {
            return new AddedToken(newId, content, singleWord, lstrip, rstrip, normalized, special);
        }
    }

    private final Map<String, Integer> idsByContent = new HashMap<>();
    private final Map<Integer, AddedToken> tokensById = new HashMap<>();
    private final Set<String> specialContents = new HashSet<>();
    /** For normalized tokens whose normalized form differs, that form: what decoding shows. */
    private final Map<Integer, String> normalizedForms = new HashMap<>();
    private final Matcher rawMatcher;
    private final Matcher normalizedMatcher;

    private AddedVocabulary(List<AddedToken> tokens, Normalizers.Normalizer normalizer) {
        List<AddedToken> special = new ArrayList<>();
        List<AddedToken> classic = new ArrayList<>();
        for (AddedToken t : tokens) {
            idsByContent.put(t.content(), t.id());
            tokensById.put(t.id(), t);
            if (t.special()) {
                specialContents.add(t.content());
                special.add(t);
            } else {
                classic.add(t);
            }
        }
        // Matching order as in tokenizers: special tokens first, then the others.
        Map<String, AddedToken> raw = new LinkedHashMap<>();
        Map<String, AddedToken> norm = new LinkedHashMap<>();
        List<AddedToken> ordered = new ArrayList<>(special);
        ordered.addAll(classic);
        for (AddedToken t : ordered) {
            AddedToken current = tokensById.get(t.id());
            if (current == null || !current.content().equals(t.content())) {
                continue;
            }
            if (t.normalized()) {
                String pattern = normalizer == null ? t.content() : normalizer.normalize(t.content());
                if (!pattern.equals(t.content())) {
                    normalizedForms.put(t.id(), pattern);
                }
                if (!pattern.isEmpty()) {
                    norm.putIfAbsent(pattern, t);
                }
            } else {
                raw.putIfAbsent(t.content(), t);
            }
        }
        rawMatcher = new Matcher(raw);
        normalizedMatcher = new Matcher(norm);
    }

    /**
     * Parses the {@code added_tokens} array, with tokenizers' {@code add_tokens} rules for the ids (the file's own id is
     * only checked, as tokenizers only warns about it): a token in the model vocabulary takes the model's id; a token
     * listed again keeps its first id and takes the later entry's flags (an identical entry is skipped); any other takes
     * the next id, one past the largest added id if that is at or past the model vocabulary, else the vocabulary's size.
     */
    static AddedVocabulary parse(Json json, Bpe model, Normalizers.Normalizer normalizer)
            throws TokenizerFormatException {
        Map<String, Integer> ids = new HashMap<>();
        Map<Integer, AddedToken> byId = new LinkedHashMap<>();
        int maxId = -1;
        int vocabSize = model.vocabSize();
        if (!json.isNull()) {
            for (Json t : json.elements()) {
                t.requireObject();
                String content = t.string("content");
                t.require("id").asNonNegativeInt();
                if (content.isEmpty()) {
                    continue; // tokenizers ignores empty tokens
                }
                boolean special = t.bool("special", false);
                AddedToken flags = new AddedToken(-1, content, t.bool("single_word", false), t.bool("lstrip", false),
                        t.bool("rstrip", false), t.bool("normalized", !special), special);
                Integer id = ids.get(content);
                if (id != null && byId.get(id).withId(-1).equals(flags)) {
                    continue; // the same token again
                }
                if (id == null) {
                    id = model.tokenToId(content);
                }
                if (id == null) {
                    id = maxId < 0 ? vocabSize : maxId >= vocabSize || vocabSize == 0 ? maxId + 1 : vocabSize;
                }
                maxId = Math.max(maxId, id);
                ids.put(content, id);
                byId.put(id, flags.withId(id));
            }
        }
        return new AddedVocabulary(new ArrayList<>(byId.values()), normalizer);
    }

    Integer tokenToId(String content) {
        return idsByContent.get(content);
    }

    /** The content of the added token with this id, or null. */
    String idToToken(int id) {
        AddedToken t = tokensById.get(id);
        return t == null ? null : t.content();
    }

    /**
     * The string decoding uses for this id, or null: as in tokenizers 0.23, a normalized token
     * decodes as its normalized form (and is then no longer recognized as special by content).
     */
    String decodingForm(int id) {
        String form = normalizedForms.get(id);
        return form != null ? form : idToToken(id);
    }

    /**
     * Whether the added token with this id is matched on the raw text and takes nothing around it (not normalized, no
     * single_word, lstrip or rstrip): where it is found, the text before it and the text after it are encoded apart,
     * whatever follows ({@link Tokenizer#prefixes}).
     */
    boolean isPlainRawToken(int id) {
        AddedToken t = tokensById.get(id);
        return t != null && !t.normalized() && !t.singleWord() && !t.lstrip() && !t.rstrip();
    }

    boolean isSpecialContent(String content) {
        return specialContents.contains(content);
    }

    boolean isSpecialId(int id) {
        AddedToken t = tokensById.get(id);
        return t != null && specialContents.contains(t.content());
    }

    int maxId() {
        int max = -1;
        for (int id : tokensById.keySet()) {
            max = Math.max(max, id);
        }
        return max;
    }

    /**
     * Splits {@code text} on added tokens, normalizing the text between them: first the tokens
     * matched on the raw text, then, after normalization, the normalized ones.
     */
    PreTokenizedString extractAndNormalize(String text, Normalizers.Normalizer normalizer) {
        PreTokenizedString pts = new PreTokenizedString(text);
        pts.splitWithTokens(ns -> splitOnTokens(ns, rawMatcher));
        pts.splitWithTokens(ns -> {
            if (normalizer != null) {
                normalizer.normalize(ns);
            }
            return splitOnTokens(ns, normalizedMatcher);
        });
        return pts;
    }

    private List<PreTokenizedString.Split> splitOnTokens(NormalizedString ns, Matcher matcher) {
        String s = ns.get();
        List<PreTokenizedString.Split> out = new ArrayList<>();
        int last = 0;
        if (!matcher.isEmpty()) {
            int pos = 0;
            while (pos < s.length()) {
                int[] m = matcher.longestAt(s, pos);
                if (m == null) {
                    pos++;
                    continue;
                }
                int start = pos;
                int stop = m[0];
                AddedToken token = tokensById.get(m[1]);
                pos = stop;
                if (token.singleWord()) {
                    boolean startSpace = start == 0 || !UnicodeText.isWordChar(s.codePointBefore(start));
                    boolean stopSpace = stop == s.length() || !UnicodeText.isWordChar(s.codePointAt(stop));
                    if (!startSpace || !stopSpace) {
                        continue;
                    }
                }
                if (token.lstrip()) {
                    int newStart = start;
                    while (newStart > 0 && UnicodeText.isWhiteSpace(s.codePointBefore(newStart))) {
                        newStart -= Character.charCount(s.codePointBefore(newStart));
                    }
                    start = Math.max(newStart, last);
                }
                if (token.rstrip()) {
                    while (stop < s.length() && UnicodeText.isWhiteSpace(s.codePointAt(stop))) {
                        stop += Character.charCount(s.codePointAt(stop));
                    }
                }
                if (last < start) {
                    out.add(new PreTokenizedString.Split(ns.slice(last, start), -1));
                }
                out.add(new PreTokenizedString.Split(ns.slice(start, stop), token.id()));
                last = stop;
                // The search goes on from the end of the match itself, not past what rstrip swallowed, as tokenizers'
                // find_matches does: a token that starts with that whitespace still matches there (its piece then
                // overlaps the previous one, as its offsets do in tokenizers).
            }
        }
        if (last < s.length() || s.isEmpty()) {
            out.add(new PreTokenizedString.Split(ns.slice(last, s.length()), -1));
        }
        return out;
    }

    /** Leftmost-longest matching of a set of strings (a character trie). */
    private static final class Matcher {
        private static final class Node {
            final Map<Character, Node> next = new HashMap<>();
            int tokenId = -1;
        }

        private final Node root = new Node();
        private final boolean empty;

        Matcher(Map<String, AddedToken> patterns) {
            for (Map.Entry<String, AddedToken> e : patterns.entrySet()) {
                Node n = root;
                for (char c : e.getKey().toCharArray()) {
                    n = n.next.computeIfAbsent(c, k -> new Node());
                }
                if (n.tokenId < 0) {
                    n.tokenId = e.getValue().id();
                }
            }
            empty = patterns.isEmpty();
        }

        boolean isEmpty() {
            return empty;
        }

        /** The end and token id of the longest pattern starting at {@code pos}, or null. */
        int[] longestAt(String s, int pos) {
            Node n = root;
            int[] best = null;
            for (int i = pos; i < s.length(); i++) {
                n = n.next.get(s.charAt(i));
                if (n == null) {
                    break;
                }
                if (n.tokenId >= 0) {
                    best = new int[] {i + 1, n.tokenId};
                }
            }
            return best;
        }
    }
}
