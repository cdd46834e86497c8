package dev.jsloth.data;

import java.util.List;

/**
 * The result of loading one dataset file.
 *
 * @param records  the valid rows, in file order
 * @param skipped  how many rows were left out under {@link BadRowPolicy#SKIP} (exact, even when {@code problems} is capped)
 * @param problems one {@code FILE:LINE: what is wrong} message per skipped row, in file order; capped at
 *                 {@link DatasetLoader#MAX_REPORTED_PROBLEMS}, with a final line saying how many more were skipped
 */
public record LoadedDataset(List<Record> records, int skipped, List<String> problems) {
    public LoadedDataset {
        records = List.copyOf(records);
        problems = List.copyOf(problems);
    }
}
