package dev.jsloth.conformance;

/**
 * Deliberately plain scalar F64 implementations of every kernel, written straight from the maths in
 * {@link dev.jsloth.api.Kernels}: no blocking, no vectors, no threads. Backends are compared with these.
 */
final class Reference {
    private Reference() {
    }

    /** op(X)[i][p] for a stored rows x cols matrix. */
    static double at(double[] x, int rows, int cols, boolean trans, int i, int p) {
        return trans ? x[p * cols + i] : x[i * cols + p];
    }

    static double[] gemm(boolean ta, boolean tb, double alpha, double[] a, int ar, int ac, double[] b, int br, int bc,
                         double beta, double[] c) {
        int m = ta ? ac : ar, k = ta ? ar : ac, n = tb ? br : bc;
        double[] out = new double[m * n];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) {
                double s = 0;
                for (int p = 0; p < k; p++) s += at(a, ar, ac, ta, i, p) * at(b, br, bc, tb, p, j);
                out[i * n + j] = alpha * s + (beta == 0 ? 0 : beta * c[i * n + j]);
            }
        return out;
    }

    static double[][] rmsNorm(double[] x, double[] w, double eps, int n, int d) {
        double[] y = new double[n * d], rstd = new double[n];
        for (int i = 0; i < n; i++) {
            double ss = 0;
            for (int j = 0; j < d; j++) ss += x[i * d + j] * x[i * d + j];
            rstd[i] = 1 / Math.sqrt(ss / d + eps);
            for (int j = 0; j < d; j++) y[i * d + j] = w[j] * x[i * d + j] * rstd[i];
        }
        return new double[][]{y, rstd};
    }

    /** dx and dw of RMSNorm by the direct chain rule (no xhat simplification). */
    static double[][] rmsNormBackward(double[] dy, double[] x, double[] w, double eps, int n, int d) {
        double[] dx = new double[n * d], dw = new double[d];
        for (int i = 0; i < n; i++) {
            double ss = 0;
            for (int j = 0; j < d; j++) ss += x[i * d + j] * x[i * d + j];
            double ms = ss / d + eps;
            double r = 1 / Math.sqrt(ms);
            double drdms = -0.5 * r / ms;
            double sumGx = 0;
            for (int j = 0; j < d; j++) sumGx += dy[i * d + j] * w[j] * x[i * d + j];
            for (int j = 0; j < d; j++) {
                dx[i * d + j] = dy[i * d + j] * w[j] * r + sumGx * drdms * 2 * x[i * d + j] / d;
                dw[j] += dy[i * d + j] * x[i * d + j] * r;
            }
        }
        return new double[][]{dx, dw};
    }

    static double[] rope(double[] x, double[] cos, double[] sin, int n, int heads, int hd, boolean inverse) {
        double[] out = x.clone();
        int half = hd / 2;
        for (int t = 0; t < n; t++)
            for (int h = 0; h < heads; h++)
                for (int i = 0; i < half; i++) {
                    int o = t * heads * hd + h * hd;
                    double c = cos[t * half + i], s = (inverse ? -1 : 1) * sin[t * half + i];
                    double x1 = x[o + i], x2 = x[o + half + i];
                    out[o + i] = x1 * c - x2 * s;
                    out[o + half + i] = x2 * c + x1 * s;
                }
        return out;
    }

    static double silu(double g) {
        return g / (1 + Math.exp(-g));
    }

    static double[] swiglu(double[] g, double[] u) {
        double[] out = new double[g.length];
        for (int i = 0; i < g.length; i++) out[i] = silu(g[i]) * u[i];
        return out;
    }

    static double[][] swigluBackward(double[] dOut, double[] g, double[] u) {
        double[] dg = new double[g.length], du = new double[g.length];
        for (int i = 0; i < g.length; i++) {
            double s = 1 / (1 + Math.exp(-g[i]));
            dg[i] = dOut[i] * u[i] * (s + g[i] * s * (1 - s));
            du[i] = dOut[i] * silu(g[i]);
        }
        return new double[][]{dg, du};
    }

    static boolean visible(int[] seg, int b, int seq, int i, int j) {
        return j <= i && (seg == null || seg[b * seq + i] == seg[b * seq + j]);
    }

    /** Materialises the full probability matrix: the plain textbook algorithm. Returns {out, lse}. */
    static double[][] attention(int B, int T, int H, int KV, int hd, double[] q, double[] k, double[] v, int[] seg, double scale) {
        double[] out = new double[B * T * H * hd], lse = new double[B * H * T];
        int group = H / KV;
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++) {
                int g = h / group;
                for (int i = 0; i < T; i++) {
                    double[] s = new double[T];
                    double max = Double.NEGATIVE_INFINITY;
                    for (int j = 0; j < T; j++) {
                        if (!visible(seg, b, T, i, j)) continue;
                        double dot = 0;
                        for (int c = 0; c < hd; c++) dot += q[((b * T + i) * H + h) * hd + c] * k[((b * T + j) * KV + g) * hd + c];
                        s[j] = dot * scale;
                        max = Math.max(max, s[j]);
                    }
                    double sum = 0;
                    for (int j = 0; j < T; j++) if (visible(seg, b, T, i, j)) sum += Math.exp(s[j] - max);
                    for (int j = 0; j < T; j++) {
                        if (!visible(seg, b, T, i, j)) continue;
                        double p = Math.exp(s[j] - max) / sum;
                        for (int c = 0; c < hd; c++) out[((b * T + i) * H + h) * hd + c] += p * v[((b * T + j) * KV + g) * hd + c];
                    }
                    lse[(b * H + h) * T + i] = max + Math.log(sum);
                }
            }
        return new double[][]{out, lse};
    }

    /** Attention gradients through the explicit probability matrix and the full softmax Jacobian. */
    static double[][] attentionBackward(int B, int T, int H, int KV, int hd, double[] q, double[] k, double[] v, int[] seg,
                                        double scale, double[] dOut) {
        double[] dq = new double[q.length], dk = new double[k.length], dv = new double[v.length];
        int group = H / KV;
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++) {
                int g = h / group;
                for (int i = 0; i < T; i++) {
                    double[] s = new double[T], p = new double[T], dp = new double[T];
                    double max = Double.NEGATIVE_INFINITY;
                    for (int j = 0; j < T; j++) {
                        if (!visible(seg, b, T, i, j)) continue;
                        double dot = 0;
                        for (int c = 0; c < hd; c++) dot += q[((b * T + i) * H + h) * hd + c] * k[((b * T + j) * KV + g) * hd + c];
                        s[j] = dot * scale;
                        max = Math.max(max, s[j]);
                    }
                    double sum = 0;
                    for (int j = 0; j < T; j++) if (visible(seg, b, T, i, j)) sum += Math.exp(s[j] - max);
                    for (int j = 0; j < T; j++) if (visible(seg, b, T, i, j)) p[j] = Math.exp(s[j] - max) / sum;
                    for (int j = 0; j < T; j++) {
                        if (!visible(seg, b, T, i, j)) continue;
                        for (int c = 0; c < hd; c++) {
                            double d = dOut[((b * T + i) * H + h) * hd + c];
                            dv[((b * T + j) * KV + g) * hd + c] += p[j] * d;
                            dp[j] += d * v[((b * T + j) * KV + g) * hd + c];
                        }
                    }
                    for (int j = 0; j < T; j++) {
                        if (!visible(seg, b, T, i, j)) continue;
                        // (J_softmax^T dp)_j = p_j (dp_j - sum_l p_l dp_l)
                        double pdp = 0;
                        for (int l = 0; l < T; l++) pdp += p[l] * dp[l];
                        double ds = p[j] * (dp[j] - pdp) * scale;
                        for (int c = 0; c < hd; c++) {
                            dq[((b * T + i) * H + h) * hd + c] += ds * k[((b * T + j) * KV + g) * hd + c];
                            dk[((b * T + j) * KV + g) * hd + c] += ds * q[((b * T + i) * H + h) * hd + c];
                        }
                    }
                }
            }
        return new double[][]{dq, dk, dv};
    }

    /** Returns {loss per row, lse per row}. */
    static double[][] crossEntropy(double[] logits, int[] labels, int ignore, int n, int vocab) {
        double[] loss = new double[n], lse = new double[n];
        for (int i = 0; i < n; i++) {
            double max = Double.NEGATIVE_INFINITY;
            for (int c = 0; c < vocab; c++) max = Math.max(max, logits[i * vocab + c]);
            double sum = 0;
            for (int c = 0; c < vocab; c++) sum += Math.exp(logits[i * vocab + c] - max);
            lse[i] = max + Math.log(sum);
            loss[i] = labels[i] == ignore ? 0 : lse[i] - logits[i * vocab + labels[i]];
        }
        return new double[][]{loss, lse};
    }

    static double[] crossEntropyBackward(double[] logits, int[] labels, int ignore, double scale, int n, int vocab) {
        double[] lse = crossEntropy(logits, labels, ignore, n, vocab)[1];
        double[] d = new double[n * vocab];
        for (int i = 0; i < n; i++) {
            if (labels[i] == ignore) continue;
            for (int c = 0; c < vocab; c++)
                d[i * vocab + c] = scale * (Math.exp(logits[i * vocab + c] - lse[i]) - (c == labels[i] ? 1 : 0));
        }
        return d;
    }

    static double[] embedding(double[] table, int dim, int[] ids) {
        double[] out = new double[ids.length * dim];
        for (int i = 0; i < ids.length; i++) System.arraycopy(table, ids[i] * dim, out, i * dim, dim);
        return out;
    }

    static double[] embeddingBackward(double[] dOut, int dim, int[] ids, double[] dTable) {
        double[] d = dTable.clone();
        for (int i = 0; i < ids.length; i++) for (int j = 0; j < dim; j++) d[ids[i] * dim + j] += dOut[i * dim + j];
        return d;
    }

    /** Returns {param, m, v} after one step, written as textbook Adam with decoupled decay. */
    static double[][] adamw(double[] p, double[] g, double[] m, double[] v, double lr, double b1, double b2, double eps, double wd, long t) {
        double[] np = p.clone(), nm = m.clone(), nv = v.clone();
        for (int i = 0; i < p.length; i++) {
            np[i] = p[i] - lr * wd * p[i];
            nm[i] = b1 * m[i] + (1 - b1) * g[i];
            nv[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
            double mhat = nm[i] / (1 - Math.pow(b1, t));
            double vhat = nv[i] / (1 - Math.pow(b2, t));
            np[i] -= lr * mhat / (Math.sqrt(vhat) + eps);
        }
        return new double[][]{np, nm, nv};
    }
}
