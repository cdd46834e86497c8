package dev.jsloth.cpu;

import dev.jsloth.api.AdamWStep;
import dev.jsloth.api.ops.Dropout;

/** Elementwise maps, row broadcasts and reductions, embedding gather/scatter, and AdamW. */
final class ElementwiseKernels {
    private ElementwiseKernels() {
    }

    static void add(Buffer a, Buffer b, Buffer out, long numel) {
        NormKernels.chunks(numel, (start, len, scratch) -> {
            double[] x = scratch.get(0), y = scratch.get(1);
            a.read(start, x, 0, len);
            b.read(start, y, 0, len);
            for (int j = 0; j < len; j++) x[j] += y[j];
            out.write(start, x, 0, len);
        });
    }

    static void axpy(double alpha, Buffer x, Buffer y, long numel) {
        NormKernels.chunks(numel, (start, len, scratch) -> {
            double[] xv = scratch.get(0), yv = scratch.get(1);
            x.read(start, xv, 0, len);
            y.read(start, yv, 0, len);
            for (int j = 0; j < len; j++) yv[j] += alpha * xv[j];
            y.write(start, yv, 0, len);
        });
    }

    static void scale(Buffer x, double alpha, long numel) {
        NormKernels.chunks(numel, (start, len, scratch) -> {
            double[] v = scratch.get(0);
            x.read(start, v, 0, len);
            for (int j = 0; j < len; j++) v[j] *= alpha;
            x.write(start, v, 0, len);
        });
    }

    /**
     * Dropout's mask ({@link Dropout#keeps}): a kept element as it is, a dropped one 0, the counter stepped by an add from
     * one element to the next ({@link Dropout#drawAt}). F32 is masked where it lies (no trip through double).
     */
    static void dropoutMask(Buffer x, Buffer out, long numel, long seed, int threshold) {
        if (x.codec() == ElementCodec.F32 && out.codec() == ElementCodec.F32) {
            NormKernels.chunks(numel, (start, len, scratch) -> {
                long z = Dropout.counter(seed, start);
                for (int j = 0; j < len; j++, z = Dropout.next(z)) {
                    long at = start + j;
                    float v = x.seg().getAtIndex(ElementCodec.FLOAT, at);
                    out.seg().setAtIndex(ElementCodec.FLOAT, at, Dropout.drawAt(z) >= threshold ? v : 0f);
                }
            });
            return;
        }
        NormKernels.chunks(numel, (start, len, scratch) -> {
            double[] v = scratch.get(0);
            x.read(start, v, 0, len);
            long z = Dropout.counter(seed, start);
            for (int j = 0; j < len; j++, z = Dropout.next(z)) if (Dropout.drawAt(z) < threshold) v[j] = 0.0;
            out.write(start, v, 0, len);
        });
    }

    static void fill(Buffer x, double value, long numel) {
        NormKernels.chunks(numel, (start, len, scratch) -> {
            double[] v = scratch.get(0);
            java.util.Arrays.fill(v, value);
            x.write(start, v, 0, len);
        });
    }

    static void copy(Buffer src, Buffer dst, long numel) {
        NormKernels.chunks(numel, (start, len, scratch) -> {
            double[] v = scratch.get(0);
            src.read(start, v, 0, len);
            dst.write(start, v, 0, len);
        });
    }

    static void addRowVector(Buffer x, Buffer bias, long rows, int cols) {
        double[] b = new double[cols];
        bias.read(0, b, 0, cols);
        Parallel.forRange(Math.toIntExact(rows), Math.max(1, 8192 / Math.max(1, cols)), (lo, hi) -> {
            double[] row = new double[cols];
            for (int i = lo; i < hi; i++) {
                x.read((long) i * cols, row, 0, cols);
                for (int j = 0; j < cols; j++) row[j] += b[j];
                x.write((long) i * cols, row, 0, cols);
            }
        });
    }

    static void sumRows(Buffer x, Buffer out, long rows, int cols, boolean accumulate) {
        double[] total = Parallel.sum(Math.toIntExact(rows), Math.max(1, 8192 / Math.max(1, cols)), cols, (lo, hi, part) -> {
            double[] row = new double[cols];
            for (int i = lo; i < hi; i++) {
                x.read((long) i * cols, row, 0, cols);
                for (int j = 0; j < cols; j++) part[j] += row[j];
            }
        });
        if (accumulate) {
            double[] cur = new double[cols];
            out.read(0, cur, 0, cols);
            for (int j = 0; j < cols; j++) total[j] += cur[j];
        }
        out.write(0, total, 0, cols);
    }

    static double sumOfSquares(Buffer x, long numel) {
        return Parallel.sum(NormKernels.pieces(numel), 4, 1, (lo, hi, acc) -> {
            double[] v = NormKernels.chunkArray();
            for (int c = lo; c < hi; c++) {
                int len = NormKernels.pieceLength(numel, c);
                x.read(NormKernels.pieceStart(c), v, 0, len);
                for (int j = 0; j < len; j++) acc[0] += v[j] * v[j];
            }
        })[0];
    }

    static void embeddingForward(Buffer table, int[] ids, Buffer out, int vocab, int dim) {
        Parallel.forRange(ids.length, Math.max(1, 8192 / Math.max(1, dim)), (lo, hi) -> {
            double[] row = new double[dim];
            for (int i = lo; i < hi; i++) {
                table.read((long) ids[i] * dim, row, 0, dim);
                out.write((long) i * dim, row, 0, dim);
            }
        });
    }

    static void embeddingBackward(Buffer dOut, int[] ids, Buffer dTable, int dim) {
        double[] row = new double[dim], acc = new double[dim];
        for (int i = 0; i < ids.length; i++) { // serial: repeated ids must not race
            dOut.read((long) i * dim, row, 0, dim);
            dTable.read((long) ids[i] * dim, acc, 0, dim);
            for (int j = 0; j < dim; j++) acc[j] += row[j];
            dTable.write((long) ids[i] * dim, acc, 0, dim);
        }
    }

    /** PyTorch's AdamW (single-tensor path), operation for operation. */
    static void adamw(Buffer param, Buffer grad, Buffer m, Buffer v, AdamWStep s, long numel) {
        double decay = 1 - s.lr() * s.weightDecay();
        double bc1 = 1 - Math.pow(s.beta1(), s.step());
        double bc2Sqrt = Math.sqrt(1 - Math.pow(s.beta2(), s.step()));
        double stepSize = s.lr() / bc1;
        NormKernels.chunks(numel, (start, len, scratch) -> {
            double[] p = scratch.get(0), g = scratch.get(1), mv = scratch.get(2), vv = scratch.get(3);
            param.read(start, p, 0, len);
            grad.read(start, g, 0, len);
            m.read(start, mv, 0, len);
            v.read(start, vv, 0, len);
            for (int j = 0; j < len; j++) {
                p[j] *= decay;
                mv[j] += (g[j] - mv[j]) * (1 - s.beta1());
                vv[j] = vv[j] * s.beta2() + (1 - s.beta2()) * g[j] * g[j];
                double denom = Math.sqrt(vv[j]) / bc2Sqrt + s.eps();
                p[j] -= stepSize * mv[j] / denom;
            }
            param.write(start, p, 0, len);
            m.write(start, mv, 0, len);
            v.write(start, vv, 0, len);
        });
    }
}
