package dev.jsloth.data;

/** What the loader does with a row that fails validation (including a line that is not valid JSON). */
public enum BadRowPolicy {
    /** Leave the row out, count it, and report it in {@link LoadedDataset#problems()}. */
    SKIP,
    /** Stop loading and throw a {@link DatasetException} naming the file, line and problem. */
    FAIL
}
