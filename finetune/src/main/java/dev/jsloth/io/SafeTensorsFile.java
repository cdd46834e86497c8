package dev.jsloth.io;

import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Comparator;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A safetensors file, memory-mapped read-only through FFM. Every header field is validated before any data is
 * touched: the header length against the file size, each entry's dtype, shape and offsets (non-negative,
 * within the data section, consistent with shape x element size computed with overflow checks, no overlaps),
 * duplicate names. A malformed file is a {@link CheckpointFormatException} naming the file and the tensor.
 */
public final class SafeTensorsFile implements AutoCloseable {
    /** Headers larger than this are refused (the reference implementation's limit is 100 MB). */
    public static final long MAX_HEADER_BYTES = 100L << 20;
    private static final ObjectMapper JSON = new ObjectMapper().enable(JsonParser.Feature.STRICT_DUPLICATE_DETECTION)
            .enable(com.fasterxml.jackson.databind.DeserializationFeature.FAIL_ON_TRAILING_TOKENS); // one JSON value, then only padding

    private final Path path;
    private final Arena arena;
    private final MemorySegment data;
    private final Map<String, TensorEntry> entries;
    private final Map<String, String> metadata;

    private SafeTensorsFile(Path path, Arena arena, MemorySegment data, Map<String, TensorEntry> entries, Map<String, String> metadata) {
        this.path = path;
        this.arena = arena;
        this.data = data;
        this.entries = entries;
        this.metadata = metadata;
    }

    public static SafeTensorsFile open(Path path) throws IOException {
        Arena arena = Arena.ofShared();
        try (FileChannel ch = FileChannel.open(path, StandardOpenOption.READ)) {
            long size = ch.size();
            if (size < 8) throw new CheckpointFormatException(path, "header", "file is " + size + " bytes, too short for a safetensors header");
            MemorySegment file = ch.map(FileChannel.MapMode.READ_ONLY, 0, size, arena);
            long headerLen = file.get(ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN), 0);
            if (headerLen < 2 || headerLen > MAX_HEADER_BYTES || headerLen > size - 8)
                throw new CheckpointFormatException(path, "header", "header length " + Long.toUnsignedString(headerLen)
                        + " is invalid for a file of " + size + " bytes");
            byte[] headerBytes = file.asSlice(8, headerLen).toArray(ValueLayout.JAVA_BYTE);
            MemorySegment data = file.asSlice(8 + headerLen);
            Map<String, String> meta = new LinkedHashMap<>();
            Map<String, TensorEntry> entries = parseHeader(path, headerBytes, data.byteSize(), meta);
            return new SafeTensorsFile(path, arena, data, entries, meta);
        } catch (IOException | RuntimeException e) {
            arena.close();
            throw e;
        }
    }

    private static Map<String, TensorEntry> parseHeader(Path path, byte[] bytes, long dataSize, Map<String, String> meta)
            throws CheckpointFormatException {
        String text;
        try {
            text = StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT).decode(java.nio.ByteBuffer.wrap(bytes)).toString();
        } catch (CharacterCodingException e) {
            throw new CheckpointFormatException(path, "header", "header is not valid UTF-8");
        }
        JsonNode root;
        try {
            root = JSON.readTree(text);
        } catch (JsonProcessingException e) {
            throw new CheckpointFormatException(path, "header", "header is not valid JSON: " + e.getOriginalMessage());
        }
        if (root == null || !root.isObject()) throw new CheckpointFormatException(path, "header", "header must be a JSON object");
        Map<String, TensorEntry> out = new LinkedHashMap<>();
        for (Iterator<Map.Entry<String, JsonNode>> it = root.fields(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> f = it.next();
            String name = f.getKey();
            JsonNode v = f.getValue();
            if (name.equals("__metadata__")) {
                if (!v.isObject()) throw new CheckpointFormatException(path, "__metadata__", "must be an object of strings");
                for (Iterator<Map.Entry<String, JsonNode>> m = v.fields(); m.hasNext(); ) {
                    Map.Entry<String, JsonNode> e = m.next();
                    if (!e.getValue().isTextual()) throw new CheckpointFormatException(path, "__metadata__." + e.getKey(), "must be a string");
                    meta.put(e.getKey(), e.getValue().asText());
                }
                continue;
            }
            out.put(name, parseEntry(path, name, v, dataSize));
        }
        // as the format requires (and the reference loader checks): the tensors, in offset order, fill the data section
        // back to back from its start to its end, with no byte shared and none left over
        List<TensorEntry> sorted = new ArrayList<>(out.values());
        sorted.sort(Comparator.comparingLong(TensorEntry::begin).thenComparingLong(TensorEntry::end));
        long next = 0;
        TensorEntry before = null;
        for (TensorEntry cur : sorted) {
            if (cur.begin() < next)
                throw new CheckpointFormatException(path, "tensor '" + cur.name() + "'", "data_offsets [" + cur.begin() + ", " + cur.end()
                        + ") overlap tensor '" + before.name() + "' [" + before.begin() + ", " + before.end() + ")");
            if (cur.begin() > next)
                throw new CheckpointFormatException(path, "tensor '" + cur.name() + "'", "data_offsets start at " + cur.begin() + ": bytes ["
                        + next + ", " + cur.begin() + ") of the data belong to no tensor");
            next = cur.end();
            before = cur;
        }
        if (next != dataSize)
            throw new CheckpointFormatException(path, "data", (dataSize - next) + " bytes after the last tensor's data belong to no tensor");
        return Collections.unmodifiableMap(out);
    }

    private static TensorEntry parseEntry(Path path, String name, JsonNode v, long dataSize) throws CheckpointFormatException {
        String where = "tensor '" + name + "'";
        if (!v.isObject()) throw new CheckpointFormatException(path, where, "entry must be an object");
        JsonNode dt = v.get("dtype"), shape = v.get("shape"), offs = v.get("data_offsets");
        if (dt == null || !dt.isTextual()) throw new CheckpointFormatException(path, where + ".dtype", "missing or not a string");
        String dtype = dt.asText();
        int elem = TensorEntry.elementSize(dtype);
        if (elem < 0) throw new CheckpointFormatException(path, where + ".dtype", "unknown dtype '" + dtype + "'");
        if (shape == null || !shape.isArray()) throw new CheckpointFormatException(path, where + ".shape", "missing or not an array");
        if (shape.size() > 16) throw new CheckpointFormatException(path, where + ".shape", "rank " + shape.size() + " is too large");
        long[] dims = new long[shape.size()];
        long numel = 1;
        for (int i = 0; i < dims.length; i++) {
            JsonNode d = shape.get(i);
            if (!d.isIntegralNumber() || !d.canConvertToLong() || d.asLong() < 0)
                throw new CheckpointFormatException(path, where + ".shape[" + i + "]", "must be a non-negative integer, got " + d);
            dims[i] = d.asLong();
            try {
                numel = Math.multiplyExact(numel, dims[i]);
            } catch (ArithmeticException e) {
                throw new CheckpointFormatException(path, where + ".shape", "element count overflows");
            }
        }
        if (offs == null || !offs.isArray() || offs.size() != 2)
            throw new CheckpointFormatException(path, where + ".data_offsets", "must be an array of two integers");
        long[] be = new long[2];
        for (int i = 0; i < 2; i++) {
            JsonNode o = offs.get(i);
            if (!o.isIntegralNumber() || !o.canConvertToLong() || o.asLong() < 0)
                throw new CheckpointFormatException(path, where + ".data_offsets[" + i + "]", "must be a non-negative integer, got " + o);
            be[i] = o.asLong();
        }
        if (be[0] > be[1]) throw new CheckpointFormatException(path, where + ".data_offsets", "begin " + be[0] + " > end " + be[1]);
        if (be[1] > dataSize)
            throw new CheckpointFormatException(path, where + ".data_offsets", "end " + be[1] + " is past the data section (" + dataSize + " bytes)");
        long want;
        try {
            want = Math.multiplyExact(numel, (long) elem);
        } catch (ArithmeticException e) {
            throw new CheckpointFormatException(path, where + ".shape", "byte size overflows");
        }
        if (be[1] - be[0] != want)
            throw new CheckpointFormatException(path, where, "data_offsets span " + (be[1] - be[0]) + " bytes but shape "
                    + java.util.Arrays.toString(dims) + " of " + dtype + " needs " + want);
        return new TensorEntry(name, dtype, dims, be[0], be[1]);
    }

    public Path path() {
        return path;
    }

    public Map<String, String> metadata() {
        return metadata;
    }

    /** Tensor names in header order. */
    public List<String> names() {
        return List.copyOf(entries.keySet());
    }

    public boolean contains(String name) {
        return entries.containsKey(name);
    }

    public TensorEntry entry(String name) throws CheckpointFormatException {
        TensorEntry e = entries.get(name);
        if (e == null) throw new CheckpointFormatException(path, "tensor '" + name + "'", "not found");
        return e;
    }

    /** The tensor's bytes (little-endian), a read-only view of the mapping, valid until close. */
    public MemorySegment bytes(String name) throws CheckpointFormatException {
        TensorEntry e = entry(name);
        return data.asSlice(e.begin(), e.byteLength()).asReadOnly();
    }

    @Override
    public void close() {
        arena.close();
    }
}
