package dev.jsloth.model;

import com.fasterxml.jackson.databind.JsonNode;
import dev.jsloth.io.Json;
import dev.jsloth.io.SafeTensorsFile;

import java.io.IOException;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.file.Path;

/** One Hugging Face golden case ({@link dev.jsloth.GoldenFixtures}: the shared fixtures, or their copy in the test resources). */
record Fixture(String name, Path dir, JsonNode expected, SafeTensorsFile tensors) implements AutoCloseable {
    static final String[] CASES = {"gqa-untied", "tied-odd", "mha-bf16"};

    static Fixture open(String name) throws IOException {
        Path dir = dev.jsloth.GoldenFixtures.model(name);
        return new Fixture(name, dir, Json.read(dir.resolve("expected.json")), SafeTensorsFile.open(dir.resolve("expected.safetensors")));
    }

    int[][] ints(String key) throws IOException {
        long[] shape = tensors.entry(key).shape();
        int[] flat = tensors.bytes(key).toArray(ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN));
        int rows = (int) shape[0], cols = (int) shape[1];
        int[][] out = new int[rows][cols];
        for (int r = 0; r < rows; r++) System.arraycopy(flat, r * cols, out[r], 0, cols);
        return out;
    }

    double[] doubles(String key) throws IOException {
        return tensors.bytes(key).toArray(ValueLayout.JAVA_DOUBLE_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN));
    }

    int[] intList(String field) {
        JsonNode a = expected.get(field);
        int[] out = new int[a.size()];
        for (int i = 0; i < out.length; i++) out[i] = a.get(i).asInt();
        return out;
    }

    @Override
    public void close() {
        tensors.close();
    }

    /** max |a - b| / max |b|. */
    static double relError(double[] actual, double[] expected) {
        double num = 0, den = 0;
        for (int i = 0; i < expected.length; i++) {
            num = Math.max(num, Math.abs(actual[i] - expected[i]));
            den = Math.max(den, Math.abs(expected[i]));
        }
        return num / den;
    }

    /** The cosine of the angle between a and b (1 when both are zero). */
    static double cosine(double[] a, double[] b) {
        double ab = 0, aa = 0, bb = 0;
        for (int i = 0; i < a.length; i++) {
            ab += a[i] * b[i];
            aa += a[i] * a[i];
            bb += b[i] * b[i];
        }
        return aa == 0 && bb == 0 ? 1 : ab / Math.sqrt(aa * bb);
    }
}
