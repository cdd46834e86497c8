package dev.jsloth.data;

import java.io.IOException;

/**
 * A dataset file, row or chat template cannot be used; the message says where ({@code FILE:LINE:} for rows) and what
 * is wrong.
 */
public class DatasetException extends IOException {
    public DatasetException(String message) {
        super(message);
    }

    public DatasetException(String message, Throwable cause) {
        super(message, cause);
    }
}
