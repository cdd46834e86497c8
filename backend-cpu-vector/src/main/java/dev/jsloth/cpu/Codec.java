package dev.jsloth.cpu;

import java.lang.foreign.MemorySegment;

/** Element access for one storage layout: widening reads, rounding writes (read-only layouts refuse writes). */
interface Codec {
    double get(MemorySegment s, long i);

    void set(MemorySegment s, long i, double v);

    default void read(MemorySegment s, long i, double[] dst, int off, int n) {
        for (int j = 0; j < n; j++) dst[off + j] = get(s, i + j);
    }

    default void write(MemorySegment s, long i, double[] src, int off, int n) {
        writable(s);
        for (int j = 0; j < n; j++) set(s, i + j, src[off + j]);
    }

    default void readFloats(MemorySegment s, long i, float[] dst, int off, int n) {
        for (int j = 0; j < n; j++) dst[off + j] = (float) get(s, i + j);
    }

    default void writeFloats(MemorySegment s, long i, float[] src, int off, int n) {
        writable(s);
        for (int j = 0; j < n; j++) set(s, i + j, src[off + j]);
    }

    /**
     * Refuses a read-only segment (a frozen tensor's memory) the same way on every path: the segment's own writes throw
     * IllegalArgumentException, the Vector API's stores UnsupportedOperationException, so which one a caller saw had
     * depended on whether the run was long enough for a vector.
     */
    static MemorySegment writable(MemorySegment s) {
        if (s.isReadOnly()) throw new UnsupportedOperationException("the tensor is frozen (read-only): its memory cannot be written");
        return s;
    }
}
