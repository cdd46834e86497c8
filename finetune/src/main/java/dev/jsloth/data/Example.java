package dev.jsloth.data;

import java.util.Arrays;

/**
 * One tokenized training example.
 *
 * @param inputIds the token ids fed to the model
 * @param labels   per position, the id to train on, or {@link #IGNORE} where the position is not trained; the same
 *                 length as {@code inputIds}, and equal to it wherever it is not {@link #IGNORE}
 */
public record Example(int[] inputIds, int[] labels) {
    /** The label of a position that does not contribute to the loss (PyTorch's {@code ignore_index}). */
    public static final int IGNORE = -100;

    public Example {
        if (inputIds.length != labels.length)
            throw new IllegalArgumentException("inputIds has " + inputIds.length + " tokens but labels has " + labels.length);
    }

    /** The number of tokens. */
    public int length() {
        return inputIds.length;
    }

    /** The number of positions whose label is not {@link #IGNORE}. */
    public int trainedTokens() {
        int n = 0;
        for (int l : labels) if (l != IGNORE) n++;
        return n;
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof Example e && Arrays.equals(inputIds, e.inputIds) && Arrays.equals(labels, e.labels);
    }

    @Override
    public int hashCode() {
        return 31 * Arrays.hashCode(inputIds) + Arrays.hashCode(labels);
    }

    @Override
    public String toString() {
        return "Example[inputIds=" + Arrays.toString(inputIds) + ", labels=" + Arrays.toString(labels) + "]";
    }
}
