package dev.jsloth.train;

/** A run stopped for a reason the user must act on (non-finite loss or gradients, bad resume state). */
public class TrainingException extends RuntimeException {
    public TrainingException(String message) {
        super(message);
    }
}
