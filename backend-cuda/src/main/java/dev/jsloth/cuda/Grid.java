package dev.jsloth.cuda;

/** A launch configuration: grid and block dimensions and the dynamic shared memory in bytes. */
record Grid(int gx, int gy, int gz, int bx, int by, int bz, int sharedBytes) {
    static final int THREADS = 256;
    /** Enough blocks to fill any current GPU several times over; grid-stride loops cover the rest. */
    static final long MAX_BLOCKS = 1L << 20;

    Grid {
        if (gx <= 0 || gy <= 0 || gz <= 0 || bx <= 0 || by <= 0 || bz <= 0 || sharedBytes < 0)
            throw new IllegalArgumentException("bad launch configuration " + gx + "x" + gy + "x" + gz + " / " + bx + "x" + by + "x" + bz);
        if (gy > 65535 || gz > 65535) throw new IllegalArgumentException("grid y/z over 65535: " + gy + ", " + gz);
    }

    /** A one-dimensional grid-stride launch over {@code n} elements. */
    static Grid linear(long n) {
        return new Grid((int) Math.max(1, Math.min(MAX_BLOCKS, Math.ceilDiv(n, THREADS))), 1, 1, THREADS, 1, 1, 0);
    }

    /** A grid-stride launch over {@code n} elements of {@code bytes} each that a thread takes 16 bytes at a time. */
    static Grid packed(long n, int bytes) {
        return linear(Math.ceilDiv(n * bytes, 16));
    }

    /** {@code blocks} one-dimensional blocks of {@code threads} (capped for grid-stride kernels). */
    static Grid blocks(long blocks, int threads) {
        return new Grid((int) Math.max(1, Math.min(MAX_BLOCKS, blocks)), 1, 1, threads, 1, 1, 0);
    }

    Grid withShared(int bytes) {
        return new Grid(gx, gy, gz, bx, by, bz, bytes);
    }
}
