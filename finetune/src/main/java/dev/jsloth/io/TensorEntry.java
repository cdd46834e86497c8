package dev.jsloth.io;

import dev.jsloth.api.DType;

import java.util.Arrays;

/**
 * One tensor of a safetensors file: name, dtype string as written in the header, shape, and the byte range of
 * its data relative to the start of the data section.
 */
public record TensorEntry(String name, String dtype, long[] shape, long begin, long end) {
    /** Bytes per element of each safetensors dtype (sub-byte types are not defined by the format). */
    public static int elementSize(String dtype) {
        return switch (dtype) {
            case "F64", "I64", "U64" -> 8;
            case "F32", "I32", "U32" -> 4;
            case "F16", "BF16", "I16", "U16" -> 2;
            case "I8", "U8", "BOOL", "F8_E4M3", "F8_E5M2" -> 1;
            default -> -1;
        };
    }

    public long numel() {
        long n = 1;
        for (long d : shape) n = Math.multiplyExact(n, d);
        return n;
    }

    public long byteLength() {
        return end - begin;
    }

    /** The engine's type for this dtype, if it has one. */
    public DType engineType() {
        return switch (dtype) {
            case "F32" -> DType.F32;
            case "F64" -> DType.F64;
            case "BF16" -> DType.BF16;
            case "F16" -> DType.F16;
            case "I32" -> DType.I32;
            default -> null;
        };
    }

    /** Whether this tensor has exactly the shape {@code s} (compared as longs: no dimension overflows an int here). */
    public boolean hasShape(int[] s) {
        if (s == null || s.length != shape.length) return false;
        for (int i = 0; i < s.length; i++) if (shape[i] != s[i]) return false;
        return true;
    }

    /** Whether the values are floating point (F32, F64, BF16, F16): what a weight must be to be decoded, merged or quantized. */
    public boolean isFloating() {
        DType t = engineType();
        return t != null && t.isFloating();
    }

    public int[] intShape() {
        int[] s = new int[shape.length];
        for (int i = 0; i < shape.length; i++) s[i] = Math.toIntExact(shape[i]);
        return s;
    }

    @Override
    public String toString() {
        return name + " " + dtype + Arrays.toString(shape);
    }
}
