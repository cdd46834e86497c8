package dev.jsloth.cpu;

import jdk.incubator.vector.DoubleVector;
import jdk.incubator.vector.VectorSpecies;

/**
 * RMSNorm, rotary embedding and SwiGLU: row-parallel, computed in double, stored in each tensor's type. Tensors without
 * an F64 one run in single precision instead ({@link SwiGluF32}, {@link NormF32}), except a norm whose weight gradient
 * is wanted.
 */
final class NormKernels {
    private static final int CHUNK = 4096;
    /** Each thread's work arrays (at most 4 of CHUNK doubles and 4 of CHUNK floats: 192 KB). */
    private static final ThreadLocal<Scratch> SCRATCH = ThreadLocal.withInitial(Scratch::new);
    private static final VectorSpecies<Double> DV = VectorMath.DV;

    private NormKernels() {
    }

    static void rmsNormForward(Buffer x, Buffer w, double eps, Buffer y, Buffer rstd, int n, int d) {
        double[] wv = new double[d];
        w.read(0, wv, 0, d);
        Parallel.forRange(n, Math.max(1, 16384 / Math.max(1, d)), (lo, hi) -> {
            double[] row = new double[d];
            for (int i = lo; i < hi; i++) {
                long base = (long) i * d;
                x.read(base, row, 0, d);
                double ss = 0;
                for (int j = 0; j < d; j++) ss += row[j] * row[j];
                double r = 1.0 / Math.sqrt(ss / d + eps);
                for (int j = 0; j < d; j++) row[j] = wv[j] * (row[j] * r);
                y.write(base, row, 0, d);
                rstd.set(i, r);
            }
        });
    }

    /** RMSNorm's dx (plus {@code residual}'s row where it is non-null: the add in the same pass) and dw. */
    static void rmsNormBackward(Buffer dy, Buffer x, Buffer w, Buffer rstd, Buffer residual, Buffer dx, Buffer dw, int n, int d) {
        double[] wv = new double[d];
        w.read(0, wv, 0, d);
        double[] dwTotal = Parallel.sum(n, Math.max(1, 16384 / Math.max(1, d)), dw == null ? 0 : d, (lo, hi, dwPart) -> {
            double[] g = new double[d], xh = new double[d], dyr = new double[d], res = residual == null ? null : new double[d];
            for (int i = lo; i < hi; i++) {
                long base = (long) i * d;
                dy.read(base, dyr, 0, d);
                x.read(base, xh, 0, d);
                double r = rstd.get(i);
                double dot = 0;
                for (int j = 0; j < d; j++) {
                    xh[j] *= r;
                    g[j] = dyr[j] * wv[j];
                    dot += g[j] * xh[j];
                }
                dot /= d;
                if (dw != null) for (int j = 0; j < d; j++) dwPart[j] += dyr[j] * xh[j];
                for (int j = 0; j < d; j++) g[j] = r * (g[j] - xh[j] * dot);
                if (res != null) {
                    residual.read(base, res, 0, d);
                    for (int j = 0; j < d; j++) g[j] += res[j];
                }
                dx.write(base, g, 0, d);
            }
        });
        if (dw != null) {
            double[] cur = new double[d];
            dw.read(0, cur, 0, d);
            for (int j = 0; j < d; j++) cur[j] += dwTotal[j];
            dw.write(0, cur, 0, d);
        }
    }

    static void rope(Buffer x, Buffer cos, Buffer sin, int n, int heads, int headDim, boolean inverse) {
        int half = headDim / 2;
        int width = heads * headDim;
        double sign = inverse ? -1 : 1;
        Parallel.forRange(n, Math.max(1, 16384 / Math.max(1, width)), (lo, hi) -> {
            double[] row = new double[width], c = new double[half], s = new double[half];
            for (int t = lo; t < hi; t++) {
                cos.read((long) t * half, c, 0, half);
                sin.read((long) t * half, s, 0, half);
                long base = (long) t * width;
                x.read(base, row, 0, width);
                for (int h = 0; h < heads; h++) {
                    int o = h * headDim;
                    for (int i = 0; i < half; i++) {
                        double x1 = row[o + i], x2 = row[o + half + i];
                        double si = sign * s[i];
                        row[o + i] = x1 * c[i] - x2 * si;
                        row[o + half + i] = x2 * c[i] + x1 * si;
                    }
                }
                x.write(base, row, 0, width);
            }
        });
    }

    static void swigluForward(Buffer gate, Buffer up, Buffer out, long numel) {
        chunks(numel, (start, len, scratch) -> {
            double[] g = scratch.get(0), u = scratch.get(1), e = scratch.get(2);
            gate.read(start, g, 0, len);
            up.read(start, u, 0, len);
            negExp(g, e, len);
            int j = 0;
            for (int end = DV.loopBound(len); j < end; j += DV.length()) {
                DoubleVector gv = DoubleVector.fromArray(DV, g, j), s = DoubleVector.fromArray(DV, e, j).add(1.0);
                gv.mul(DoubleVector.fromArray(DV, u, j)).div(s).intoArray(g, j);
            }
            for (; j < len; j++) g[j] = g[j] * u[j] / (1.0 + e[j]);
            out.write(start, g, 0, len);
        });
    }

    static void swigluBackward(Buffer dOut, Buffer gate, Buffer up, Buffer dGate, Buffer dUp, long numel) {
        chunks(numel, (start, len, scratch) -> {
            double[] d = scratch.get(0), g = scratch.get(1), u = scratch.get(2), e = scratch.get(3);
            dOut.read(start, d, 0, len);
            gate.read(start, g, 0, len);
            up.read(start, u, 0, len);
            negExp(g, e, len);
            DoubleVector one = DoubleVector.broadcast(DV, 1.0);
            int j = 0;
            for (int end = DV.loopBound(len); j < end; j += DV.length()) {
                DoubleVector dv = DoubleVector.fromArray(DV, d, j), gv = DoubleVector.fromArray(DV, g, j);
                DoubleVector uv = DoubleVector.fromArray(DV, u, j);
                DoubleVector s = one.div(DoubleVector.fromArray(DV, e, j).add(1.0));
                DoubleVector silu = gv.mul(s);
                dv.mul(uv).mul(s).mul(gv.mul(s.neg().add(1.0)).add(1.0)).intoArray(g, j);
                dv.mul(silu).intoArray(u, j);
            }
            for (; j < len; j++) {
                double s = 1.0 / (1.0 + e[j]);
                double silu = g[j] * s;
                double dg = d[j] * u[j] * s * (1 + g[j] * (1 - s));
                u[j] = d[j] * silu;
                g[j] = dg;
            }
            dGate.write(start, g, 0, len);
            dUp.write(start, u, 0, len);
        });
    }

    /** e[j] = exp(-x[j]) for j < n, lane-wise ({@link VectorMath#expInPlace}: the same bits in every JIT tier). */
    private static void negExp(double[] x, double[] e, int n) {
        for (int j = 0; j < n; j++) e[j] = -x[j];
        VectorMath.expInPlace(e, n);
    }

    /** A contiguous piece {@code [start, start+len)} of a flat element range. */
    interface Chunk {
        void run(long start, int len, Scratch scratch);
    }

    /**
     * Work arrays of CHUNK doubles (or floats), kept per thread ({@code SCRATCH}) and reused by every chunk it runs: fresh
     * arrays per chunk cost more than the arithmetic (every allocation lands on memory not in cache, and feeds the GC),
     * and fresh ones per task still zeroed ~1.5 MB per SwiGLU call at 512 x 1408 (32 tasks of 48 KB).
     */
    static final class Scratch {
        private final double[][] arrays = new double[4][];
        private final float[][] floatArrays = new float[4][];
        private boolean busy;

        double[] get(int slot) {
            if (arrays[slot] == null) arrays[slot] = new double[CHUNK];
            return arrays[slot];
        }

        /** The single-precision work array of this slot (for {@link SwiGluF32}). */
        float[] floats(int slot) {
            if (floatArrays[slot] == null) floatArrays[slot] = new float[CHUNK];
            return floatArrays[slot];
        }
    }

    /** A work array of one chunk's length. */
    static double[] chunkArray() {
        return new double[CHUNK];
    }

    /** Number of CHUNK-sized pieces of a flat range. */
    static int pieces(long numel) {
        return Math.toIntExact((numel + CHUNK - 1) / CHUNK);
    }

    /** Element range of piece {@code c}: {@code [c*CHUNK, ...)}. */
    static long pieceStart(int c) {
        return (long) c * CHUNK;
    }

    static int pieceLength(long numel, int c) {
        return (int) Math.min(CHUNK, numel - pieceStart(c));
    }

    /** Runs {@code body} over {@code [0, numel)} in chunks of up to CHUNK elements, in parallel. */
    static void chunks(long numel, Chunk body) {
        int count = Math.toIntExact((numel + CHUNK - 1) / CHUNK);
        Parallel.forRange(count, 4, (lo, hi) -> {
            Scratch held = SCRATCH.get();
            Scratch scratch = held.busy ? new Scratch() : held; // a body that ran chunks() again gets its own
            scratch.busy = true;
            try {
                for (int c = lo; c < hi; c++) {
                    long start = (long) c * CHUNK;
                    body.run(start, (int) Math.min(CHUNK, numel - start), scratch);
                }
            } finally {
                scratch.busy = false;
            }
        });
    }
}
