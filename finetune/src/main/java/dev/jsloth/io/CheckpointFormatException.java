package dev.jsloth.io;

import java.io.IOException;
import java.nio.file.Path;

/** A checkpoint, adapter or config file is malformed or unsupported; the message names the file and the field. */
public class CheckpointFormatException extends IOException {
    public CheckpointFormatException(Path file, String where, String problem) {
        super(file + (where == null || where.isEmpty() ? "" : ": " + where) + ": " + problem);
    }

    public CheckpointFormatException(String message, Throwable cause) {
        super(message, cause);
    }
}
