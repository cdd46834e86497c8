package dev.jsloth.data;

/**
 * A chat template failed: it does not parse, it raised an exception ({@code raise_exception(...)}), it used something
 * the sandbox forbids, or it ran past the sandbox's output or work limits.
 */
public class TemplateException extends DatasetException {
    public TemplateException(String message) {
        super(message);
    }

    public TemplateException(String message, Throwable cause) {
        super(message, cause);
    }
}
