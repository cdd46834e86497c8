package dev.jsloth.api;

import java.util.Arrays;

/** The dimensions of a row-major, contiguous tensor. Immutable. */
public final class Shape {
    private final int[] dims;
    private final long numel;

    private Shape(int[] dims) {
        long n = 1;
        for (int d : dims) {
            if (d < 0) throw new IllegalArgumentException("negative dimension in " + Arrays.toString(dims));
            n = Math.multiplyExact(n, (long) d);
        }
        this.dims = dims;
        this.numel = n;
    }

    public static Shape of(int... dims) {
        return new Shape(dims.clone());
    }

    public int rank() {
        return dims.length;
    }

    public int dim(int i) {
        return dims[i < 0 ? dims.length + i : i];
    }

    public int[] dims() {
        return dims.clone();
    }

    public long numel() {
        return numel;
    }

    /** The last dimension (the row length when the tensor is read as a matrix); 1 for a scalar. */
    public int cols() {
        return dims.length == 0 ? 1 : dims[dims.length - 1];
    }

    /** The product of all dimensions but the last (the row count when read as a matrix). */
    public long rows() {
        return dims.length == 0 ? 1 : numel / Math.max(1, cols()) ;
    }

    /** The same shape with the first dimension replaced. */
    public Shape withFirst(int first) {
        int[] d = dims.clone();
        d[0] = first;
        return new Shape(d);
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof Shape s && Arrays.equals(dims, s.dims);
    }

    @Override
    public int hashCode() {
        return Arrays.hashCode(dims);
    }

    @Override
    public String toString() {
        return Arrays.toString(dims);
    }
}
