package dev.jsloth.data;

/** One tokenized training example: input ids and per-token labels (-100 where the token is not trained). */
public record Example(int[] inputIds, int[] labels) {
    public Example {
        if (inputIds.length != labels.length)
            throw new IllegalArgumentException(inputIds.length + " ids but " + labels.length + " labels");
    }
}
