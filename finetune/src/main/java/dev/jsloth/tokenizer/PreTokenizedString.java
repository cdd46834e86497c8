package dev.jsloth.tokenizer;

import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;
import java.util.function.Function;

/**
 * The input being encoded, as a list of pieces. A piece is either an added token already
 * recognized (it keeps its id and is left alone) or text still to be normalized, split and handed
 * to the model ({@code PreTokenizedString} in tokenizers).
 */
final class PreTokenizedString {
    /** One piece; {@code tokenId} is the added token's id, or -1 for ordinary text. */
    record Split(NormalizedString text, int tokenId) {
        boolean isToken() {
            return tokenId >= 0;
        }
    }

    private List<Split> splits = new ArrayList<>();

    PreTokenizedString(String text) {
        splits.add(new Split(NormalizedString.of(text), -1));
    }

    List<Split> splits() {
        return splits;
    }

    /**
     * Replaces every text piece by the pieces {@code fn} makes of it; empty pieces are dropped, added
     * tokens are kept as they are.
     */
    void split(Function<NormalizedString, List<NormalizedString>> fn) {
        List<Split> out = new ArrayList<>(splits.size());
        for (Split s : splits) {
            if (s.isToken()) {
                out.add(s);
                continue;
            }
            for (NormalizedString piece : fn.apply(s.text())) {
                if (!piece.isEmpty()) {
                    out.add(new Split(piece, -1));
                }
            }
        }
        splits = out;
    }

    /** Like {@link #split} but {@code fn} may also mark pieces as added tokens. */
    void splitWithTokens(Function<NormalizedString, List<Split>> fn) {
        List<Split> out = new ArrayList<>(splits.size());
        for (Split s : splits) {
            if (s.isToken()) {
                out.add(s);
                continue;
            }
            for (Split piece : fn.apply(s.text())) {
                if (!piece.text().isEmpty()) {
                    out.add(piece);
                }
            }
        }
        splits = out;
    }

    /** Applies {@code fn} to every text piece in place. */
    void normalize(Consumer<NormalizedString> fn) {
        for (Split s : splits) {
            if (!s.isToken()) {
                fn.accept(s.text());
            }
        }
    }
}
