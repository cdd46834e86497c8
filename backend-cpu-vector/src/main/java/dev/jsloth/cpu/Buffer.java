package dev.jsloth.cpu;

import java.lang.foreign.MemorySegment;

/** A tensor's memory with the codec of its element type: what the row-wise kernels read and write. */
record Buffer(MemorySegment seg, Codec codec) {
    void read(long index, double[] dst, int off, int n) {
        codec.read(seg, index, dst, off, n);
    }

    void write(long index, double[] src, int off, int n) {
        codec.write(seg, index, src, off, n);
    }

    double get(long index) {
        return codec.get(seg, index);
    }

    void set(long index, double v) {
        codec.set(seg, index, v);
    }
}
