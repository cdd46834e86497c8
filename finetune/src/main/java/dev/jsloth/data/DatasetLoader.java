package dev.jsloth.data;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.JsonToken;
import com.fasterxml.jackson.core.StreamReadConstraints;
import com.fasterxml.jackson.core.StreamReadFeature;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.ObjectReader;
import com.fasterxml.jackson.databind.node.NullNode;

import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * Loads a dataset file into validated {@link Record}s.
 *
 * <ul>
 *   <li>{@code .jsonl}: one JSON object per line; blank lines are ignored; a row's location is its 1-based line.</li>
 *   <li>{@code .json}: a top-level array of objects, or an object holding such an array under {@code "data"} or
 *       {@code "train"}; a row's location is its 1-based element index.</li>
 * </ul>
 *
 * <p>Every row is validated (see {@link DatasetFormat}); a row that is not valid JSON, not an object, or not a valid
 * row of the file's format is a problem {@code FILE:LINE: what is wrong}. Under {@link BadRowPolicy#SKIP} problems are
 * counted and listed; under {@link BadRowPolicy#FAIL} the first one is thrown as a {@link DatasetException}. Files
 * over {@link #MAX_FILE_BYTES}, JSONL lines over {@link #MAX_LINE_BYTES}, and {@code .json} files that are not valid
 * JSON as a whole are refused with a {@link DatasetException} whatever the policy. Nothing is dropped silently.
 */
public final class DatasetLoader {
    /** Dataset files larger than this (2 GiB) are refused. */
    public static final long MAX_FILE_BYTES = 2L << 30;
    /** JSONL lines longer than this (64 MiB) are refused. */
    public static final int MAX_LINE_BYTES = 64 << 20;
    /** At most this many problems are listed; {@link LoadedDataset#skipped()} still counts all of them. */
    public static final int MAX_REPORTED_PROBLEMS = 1000;

    private static final ObjectMapper MAPPER = new ObjectMapper(JsonFactory.builder()
            .streamReadConstraints(StreamReadConstraints.builder().maxStringLength(MAX_LINE_BYTES).build())
            .enable(StreamReadFeature.STRICT_DUPLICATE_DETECTION)
            .build())
            .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS);
    /** Reads one element of a streamed array (the array's remaining elements follow it). */
    private static final ObjectReader ELEMENT_READER = MAPPER.reader().without(DeserializationFeature.FAIL_ON_TRAILING_TOKENS);

    private DatasetLoader() {
    }

    /**
     * Loads {@code file}.
     *
     * @param format the row layout, or {@link DatasetFormat#AUTO} to detect it from the file's first valid row
     * @param policy what to do with bad rows
     * @throws DatasetException for a bad row under {@link BadRowPolicy#FAIL}, or a file that cannot be read as a dataset
     */
    public static LoadedDataset load(Path file, DatasetFormat format, BadRowPolicy policy) throws IOException {
        return load(file, format, policy, MAX_FILE_BYTES, MAX_LINE_BYTES);
    }

    /** {@link #load(Path, DatasetFormat, BadRowPolicy)} with other size bounds (for tests). */
    static LoadedDataset load(Path file, DatasetFormat format, BadRowPolicy policy, long maxFileBytes, int maxLineBytes)
            throws IOException {
        String name = file.getFileName() == null ? file.toString() : file.getFileName().toString();
        if (!Files.isRegularFile(file)) throw new DatasetException(name + ": no such dataset file (" + file + ")");
        long size = Files.size(file);
        if (size > maxFileBytes)
            throw new DatasetException(name + ": file is " + size + " bytes, larger than the " + mib(maxFileBytes)
                                       + " limit for a dataset file; split it");
        Rows rows = new Rows(name, format, policy);
        String lower = name.toLowerCase(Locale.ROOT);
        if (lower.endsWith(".jsonl")) readJsonLines(file, rows, maxLineBytes);
        else if (lower.endsWith(".json")) readJsonArray(file, rows);
        else throw new DatasetException(name + ": unsupported dataset file type; expected .jsonl (one object per line) or .json (an array)");
        return rows.result();
    }

    private static void readJsonLines(Path file, Rows rows, int maxLineBytes) throws IOException {
        try (LineReader lines = new LineReader(openOrThrow(file, rows.name), maxLineBytes)) {
            byte[] line;
            while ((line = nextLine(lines, rows.name)) != null) {
                int number = lines.lineNumber();
                int start = number == 1 ? skipBom(line) : 0;
                if (isBlank(line, start)) continue;
                JsonNode row;
                try {
                    row = MAPPER.readTree(line, start, line.length - start);
                } catch (JsonProcessingException e) {
                    String col = e.getLocation() == null ? "" : " at column " + e.getLocation().getColumnNr();
                    rows.reject(number, "invalid JSON" + col + ": " + e.getOriginalMessage());
                    continue;
                }
                rows.accept(number, row);
            }
        }
    }

    private static byte[] nextLine(LineReader lines, String name) throws IOException {
        try {
            return lines.next();
        } catch (LineReader.LineTooLongException e) {
            throw new DatasetException(name + ":" + e.line + ": " + e.getMessage() + "; is this really a JSONL file?");
        }
    }

    private static void readJsonArray(Path file, Rows rows) throws IOException {
        try (InputStream in = openOrThrow(file, rows.name); JsonParser p = MAPPER.createParser(in)) {
            JsonToken top = p.nextToken();
            if (top == JsonToken.START_ARRAY) {
                readElements(p, rows);
            } else if (top == JsonToken.START_OBJECT) {
                String arrayField = null;
                String field;
                while ((field = p.nextFieldName()) != null) {
                    JsonToken value = p.nextToken();
                    if ((field.equals("data") || field.equals("train")) && value == JsonToken.START_ARRAY) {
                        if (arrayField != null)
                            throw new DatasetException(rows.name + ": has both \"" + arrayField + "\" and \"" + field + "\" arrays; keep one");
                        arrayField = field;
                        readElements(p, rows);
                    } else {
                        p.skipChildren();
                    }
                }
                if (arrayField == null)
                    throw new DatasetException(rows.name + ": the top-level object has no \"data\" or \"train\" array");
            } else {
                throw new DatasetException(rows.name + ": expected a top-level array of rows, or an object with a \"data\" or \"train\" array");
            }
            if (p.nextToken() != null) throw new DatasetException(rows.name + ": unexpected content after the top-level JSON value");
        } catch (JsonProcessingException e) {
            String at = e.getLocation() == null ? "" : " at line " + e.getLocation().getLineNr() + ", column " + e.getLocation().getColumnNr();
            throw new DatasetException(rows.name + ": invalid JSON" + at + ": " + e.getOriginalMessage(), e);
        }
    }

    private static void readElements(JsonParser p, Rows rows) throws IOException {
        int index = 0;
        while (p.nextToken() != JsonToken.END_ARRAY) {
            index++;
            JsonNode row = ELEMENT_READER.readTree(p);
            if (row == null) row = NullNode.getInstance();
            rows.accept(index, row);
        }
    }

    private static String mib(long bytes) {
        return bytes >= 1L << 30 && bytes % (1L << 30) == 0 ? (bytes >> 30) + " GiB"
                : bytes >= 1L << 20 && bytes % (1L << 20) == 0 ? (bytes >> 20) + " MiB" : bytes + " bytes";
    }

    private static InputStream openOrThrow(Path file, String name) throws IOException {
        try {
            return Files.newInputStream(file);
        } catch (NoSuchFileException e) {
            throw new DatasetException(name + ": no such dataset file (" + file + ")", e);
        }
    }

    private static int skipBom(byte[] line) {
        return line.length >= 3 && (line[0] & 0xff) == 0xEF && (line[1] & 0xff) == 0xBB && (line[2] & 0xff) == 0xBF ? 3 : 0;
    }

    private static boolean isBlank(byte[] line, int start) {
        for (int i = start; i < line.length; i++) {
            byte b = line[i];
            if (b != ' ' && b != '\t' && b != '\r') return false;
        }
        return true;
    }

    /** Accumulates validated rows and problems for one file, resolving AUTO from the first valid row. */
    private static final class Rows {
        final String name;
        final BadRowPolicy policy;
        final List<Record> records = new ArrayList<>();
        final List<String> problems = new ArrayList<>();
        final boolean auto;
        DatasetFormat format;
        int detectedAt;
        int skipped;

        Rows(String name, DatasetFormat format, BadRowPolicy policy) {
            this.name = name;
            this.policy = policy;
            this.auto = format == DatasetFormat.AUTO;
            this.format = auto ? null : format;
        }

        void accept(int line, JsonNode row) throws DatasetException {
            DatasetFormat f = format;
            if (f == null) {
                f = RowParser.detect(row);
                if (f == null) {
                    reject(line, row.isObject()
                            ? "cannot tell the row format: expected \"messages\" or \"conversations\" (chat), "
                              + "\"instruction\" and \"output\" (alpaca), or \"text\""
                            : "expected a JSON object, got " + RowParser.typeName(row));
                    return;
                }
            }
            try {
                records.add(RowParser.parse(row, f, line));
            } catch (RowParser.BadRowException e) {
                boolean otherShape = auto && format != null && RowParser.detect(row) != format;
                String hint = otherShape ? " (rows of this file are " + format.name().toLowerCase(Locale.ROOT)
                        + ", detected at line " + detectedAt + ")" : "";
                reject(line, e.getMessage() + hint);
                return;
            }
            if (format == null) {
                format = f;
                detectedAt = line;
            }
        }

        void reject(int line, String problem) throws DatasetException {
            String message = name + ":" + line + ": " + problem;
            if (policy == BadRowPolicy.FAIL) throw new DatasetException(message);
            skipped++;
            if (problems.size() < MAX_REPORTED_PROBLEMS) problems.add(message);
        }

        LoadedDataset result() {
            List<String> listed = problems;
            if (skipped > problems.size()) {
                listed = new ArrayList<>(problems);
                listed.add(name + ": ... and " + (skipped - problems.size()) + " more bad rows skipped (only the first "
                           + MAX_REPORTED_PROBLEMS + " are listed)");
            }
            return new LoadedDataset(records, skipped, listed);
        }
    }
}
