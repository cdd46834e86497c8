package dev.jsloth.io;

import com.fasterxml.jackson.databind.node.ObjectNode;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** Writes a safetensors file atomically (temporary file, fsync, rename). Tensors are written in the given order. */
public final class SafeTensorsWriter {
    /** A tensor to write: its bytes must be little-endian and exactly shape x element size long. */
    public record Item(String name, String dtype, long[] shape, MemorySegment bytes) {
    }

    private final List<Item> items = new ArrayList<>();
    private final Map<String, String> metadata = new LinkedHashMap<>();

    public SafeTensorsWriter metadata(String key, String value) {
        metadata.put(key, value);
        return this;
    }

    public SafeTensorsWriter add(String name, String dtype, long[] shape, MemorySegment bytes) {
        int elem = TensorEntry.elementSize(dtype);
        if (elem < 0) throw new IllegalArgumentException("unknown dtype " + dtype + " for " + name);
        long n = 1;
        for (long d : shape) n = Math.multiplyExact(n, d);
        if (bytes.byteSize() != n * elem)
            throw new IllegalArgumentException(name + ": " + bytes.byteSize() + " bytes for " + java.util.Arrays.toString(shape) + " " + dtype);
        for (Item i : items) if (i.name().equals(name)) throw new IllegalArgumentException("duplicate tensor " + name);
        items.add(new Item(name, dtype, shape.clone(), bytes));
        return this;
    }

    public SafeTensorsWriter add(String name, String dtype, int[] shape, MemorySegment bytes) {
        long[] s = new long[shape.length];
        for (int i = 0; i < shape.length; i++) s[i] = shape[i];
        return add(name, dtype, s, bytes);
    }

    public void write(Path file) throws IOException {
        ObjectNode header = Json.MAPPER.createObjectNode();
        if (!metadata.isEmpty()) {
            ObjectNode m = header.putObject("__metadata__");
            metadata.forEach(m::put);
        }
        long offset = 0;
        for (Item i : items) {
            ObjectNode e = header.putObject(i.name());
            e.put("dtype", i.dtype());
            var shape = e.putArray("shape");
            for (long d : i.shape()) shape.add(d);
            var offs = e.putArray("data_offsets");
            offs.add(offset);
            offset += i.bytes().byteSize();
            offs.add(offset);
        }
        byte[] json = Json.MAPPER.copy().disable(com.fasterxml.jackson.databind.SerializationFeature.INDENT_OUTPUT)
                .writeValueAsBytes(header);
        int padded = (json.length + 7) / 8 * 8; // align the data section to 8 bytes, padding with spaces
        byte[] head = new byte[8 + padded];
        ByteBuffer.wrap(head).order(ByteOrder.LITTLE_ENDIAN).putLong(padded);
        System.arraycopy(json, 0, head, 8, json.length);
        for (int i = 8 + json.length; i < head.length; i++) head[i] = ' ';
        AtomicFiles.write(file, ch -> {
            ByteBuffer h = ByteBuffer.wrap(head);
            while (h.hasRemaining()) ch.write(h);
            for (Item i : items) {
                ByteBuffer b = i.bytes().asByteBuffer();
                while (b.hasRemaining()) ch.write(b);
            }
        });
    }
}
