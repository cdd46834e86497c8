package dev.jsloth.tokenizer;

import java.io.IOException;

/**
 * A {@code tokenizer.json} file that cannot be read: malformed JSON, a field of the wrong type, an
 * inconsistent vocabulary, or a component this implementation does not support.
 *
 * <p>The message always starts with the file and the JSON path of the offending field, for example
 * {@code "tokenizer.json: model.merges[12]: token 'xy' is not in the vocabulary"}.
 */
public class TokenizerFormatException extends IOException {
    private static final long serialVersionUID = 1L;

    /** Creates an exception with a complete message (file and field included by the caller). */
    public TokenizerFormatException(String message) {
        super(message);
    }

    /** Creates an exception with a complete message and the underlying cause. */
    public TokenizerFormatException(String message, Throwable cause) {
        super(message, cause);
    }
}
