package dev.jsloth.io;

import com.fasterxml.jackson.databind.JsonNode;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The weights of a checkpoint directory: {@code model.safetensors}, or the shards listed by
 * {@code model.safetensors.index.json} (each shard a plain file name inside the directory; every tensor the
 * index names must be in its shard).
 */
public final class SafeTensorsCheckpoint implements AutoCloseable {
    public static final String SINGLE = "model.safetensors";
    public static final String INDEX = "model.safetensors.index.json";

    private final Map<String, SafeTensorsFile> byTensor;
    private final List<SafeTensorsFile> files;

    private SafeTensorsCheckpoint(Map<String, SafeTensorsFile> byTensor, List<SafeTensorsFile> files) {
        this.byTensor = byTensor;
        this.files = files;
    }

    public static SafeTensorsCheckpoint open(Path dir) throws IOException {
        Path single = dir.resolve(SINGLE), index = dir.resolve(INDEX);
        if (Files.isRegularFile(single)) return of(List.of(single));
        if (Files.isRegularFile(index)) return openSharded(dir, index);
        throw new CheckpointFormatException(dir, "", "no " + SINGLE + " or " + INDEX + " found");
    }

    /** A checkpoint made of the given files (tensor names must be unique across them). */
    public static SafeTensorsCheckpoint of(List<Path> paths) throws IOException {
        Map<String, SafeTensorsFile> by = new LinkedHashMap<>();
        List<SafeTensorsFile> files = new ArrayList<>();
        try {
            for (Path p : paths) {
                SafeTensorsFile f = SafeTensorsFile.open(p);
                files.add(f);
                for (String n : f.names()) {
                    SafeTensorsFile prev = by.put(n, f);
                    if (prev != null) throw new CheckpointFormatException(p, "tensor '" + n + "'", "also present in " + prev.path());
                }
            }
        } catch (IOException | RuntimeException e) {
            files.forEach(SafeTensorsFile::close);
            throw e;
        }
        return new SafeTensorsCheckpoint(by, files);
    }

    private static SafeTensorsCheckpoint openSharded(Path given, Path index) throws IOException {
        Path dir = given.toAbsolutePath().normalize(); // "." normalizes to an empty path, whose files have no parent
        JsonNode root = Json.read(index);
        JsonNode map = root.get("weight_map");
        if (map == null || !map.isObject()) throw new CheckpointFormatException(index, "weight_map", "missing or not an object");
        Map<String, String> shardOf = new LinkedHashMap<>();
        List<Path> shards = new ArrayList<>();
        for (Iterator<Map.Entry<String, JsonNode>> it = map.fields(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> e = it.next();
            if (!e.getValue().isTextual()) throw new CheckpointFormatException(index, "weight_map." + e.getKey(), "must be a file name");
            String file = e.getValue().asText();
            Path p = dir.resolve(file).normalize();
            if (file.contains("/") || file.contains("\\") || file.startsWith(".") || !dir.equals(p.getParent()))
                throw new CheckpointFormatException(index, "weight_map." + e.getKey(), "shard '" + file + "' is not a plain file name in " + dir);
            if (!shards.contains(p)) shards.add(p);
            shardOf.put(e.getKey(), file);
        }
        SafeTensorsCheckpoint ck = of(shards);
        for (Map.Entry<String, String> e : shardOf.entrySet()) {
            SafeTensorsFile f = ck.byTensor.get(e.getKey());
            if (f == null || !f.path().getFileName().toString().equals(e.getValue())) {
                ck.close();
                throw new CheckpointFormatException(index, "weight_map." + e.getKey(), "tensor not found in shard " + e.getValue());
            }
        }
        return ck;
    }

    public boolean contains(String name) {
        return byTensor.containsKey(name);
    }

    public List<String> names() {
        return List.copyOf(byTensor.keySet());
    }

    public TensorEntry entry(String name) throws CheckpointFormatException {
        return file(name).entry(name);
    }

    public MemorySegment bytes(String name) throws CheckpointFormatException {
        return file(name).bytes(name);
    }

    /** The file holding {@code name}. */
    public SafeTensorsFile file(String name) throws CheckpointFormatException {
        SafeTensorsFile f = byTensor.get(name);
        if (f == null) {
            Path where = files.isEmpty() ? Path.of("?") : files.getFirst().path().toAbsolutePath().getParent();
            throw new CheckpointFormatException(where, "tensor '" + name + "'", "not found in the checkpoint");
        }
        return f;
    }

    @Override
    public void close() {
        files.forEach(SafeTensorsFile::close);
    }
}
