// Runs every kernel family of the CUDA sources on the host (threaded_shim.h: real threads per block, barriers,
// warp shuffles) over random small problems and compares with naive double-precision references. Prints
// "OK <checks>" or the first mismatch and exits with status 1. Built and run by CudaKernelEmulationTest.
#include "threaded_shim.h"
#include "elementwise.cu"
#include "convert.cu"
#include "reduce.cu"
#include "norm.cu"
#include "rope.cu"
#include "activation.cu"
#include "cross_entropy.cu"
#include "embedding.cu"
#include "attention.cu"
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>

static std::mt19937 rng(20261128);
static long checks = 0;

static double uniform(double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(rng); }
static int below(int n) { return (int) (rng() % (unsigned) n); }

template <typename T> static T to(double v) { return Narrow<T>::from(v); }
template <typename T> static double of(T v) { return f64_of(v); }

template <typename T> static std::vector<T> randomVec(size_t n, double lo, double hi) {
    std::vector<T> v(n);
    for (auto& x : v) x = to<T>(uniform(lo, hi));
    return v;
}

/** Fails unless max |got - want| <= tol * max(1, max |want|). */
template <typename T> static void expect(const std::string& what, const std::vector<double>& want, const std::vector<T>& got, double tol) {
    checks++;
    double ref = 1, worst = 0;
    size_t at = 0;
    for (double w : want) ref = std::max(ref, std::fabs(w));
    for (size_t i = 0; i < want.size(); i++) {
        double g = of(got[i]), err = std::fabs(g - want[i]);
        if (std::isnan(g) != std::isnan(want[i]) || err > worst) {
            worst = std::isnan(g) != std::isnan(want[i]) ? INFINITY : err;
            at = i;
        }
    }
    if (worst > tol * ref) {
        std::printf("MISMATCH %s: element %zu is %.12g, expected %.12g (|err| %.3e > %.1e x %.3e)\n", what.c_str(), at,
                    of(got[at]), want[at], worst, tol, ref);
        std::exit(1);
    }
}

/** The host's threads per row (NormOps.rowThreads), capped at 64 in most trials to keep the emulation quick. */
static int rowThreads(long d, bool full = false) {
    return (int) std::max(32L, std::min(full ? 256L : 64L, (d + 31) / 32 * 32));
}

// ------------------------------------------------------------------ elementwise, conversion, rope, SwiGLU

static void elementwise() {
    for (int trial = 0; trial < 20; trial++) {
        int rows = 1 + below(9), cols = 1 + below(70);
        i64 n = (i64) rows * cols;
        Dim3 grid{(unsigned) (1 + below(3)), 1, 1}, block{32, 1, 1};
        auto a = randomVec<double>(n, -1, 1), b = randomVec<double>(n, -1, 1), bias = randomVec<double>(cols, -1, 1);
        std::vector<double> out(n), want(n);
        emu_launch(grid, block, [&] { add_kernel<double>(a.data(), b.data(), out.data(), n); });
        for (i64 i = 0; i < n; i++) want[i] = a[i] + b[i];
        expect("add", want, out, 1e-15);
        emu_launch(grid, block, [&] { axpy_kernel<double>(-0.5, a.data(), out.data(), n); });
        for (i64 i = 0; i < n; i++) want[i] += -0.5 * a[i];
        expect("axpy", want, out, 1e-15);
        emu_launch(grid, block, [&] { scale_kernel<double>(out.data(), 3.0, n); });
        for (i64 i = 0; i < n; i++) want[i] *= 3.0;
        expect("scale", want, out, 1e-15);
        emu_launch(grid, block, [&] { add_row_vector_kernel<double>(out.data(), bias.data(), rows, cols); });
        for (i64 i = 0; i < n; i++) want[i] += bias[i % cols];
        expect("addRowVector", want, out, 1e-15);
        emu_launch(grid, block, [&] { fill_kernel<double>(out.data(), 0.25, n); });
        expect("fill", std::vector<double>(n, 0.25), out, 0);

        // dropout's mask (dev.jsloth.api.ops.Dropout: splitmix64 of seed + (i + 1) * golden, top 24 bits against the
        // threshold), in bf16 and double, from 16-byte aligned data (packs and a tail) and one element past it (no packs),
        // into another array and in place
        {
            unsigned long long seed = ((unsigned long long) rng() << 32) ^ rng();
            unsigned threshold = (unsigned) below(1 << 24);
            auto keeps = [&](i64 i) {
                unsigned long long z = seed + (unsigned long long) (i + 1) * 0x9E3779B97F4A7C15ull;
                z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
                z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
                z ^= z >> 31;
                return (unsigned) (z >> 40) >= threshold;
            };
            for (int skip = 0; skip < 2; skip++) {
                i64 len = n - skip + 9;
                std::vector<bf16_t> xb(len + 9), ob(len + 9);
                std::vector<double> xd(len + 2), od(len + 2), wb(len), wd(len);
                for (i64 i = 0; i < len + 9; i++) xb[i] = to<bf16_t>(uniform(-3, 3));
                for (i64 i = 0; i < len + 2; i++) xd[i] = uniform(-3, 3);
                for (i64 i = 0; i < len; i++) {
                    wb[i] = keeps(i) ? of(xb[skip + i]) : 0.0;
                    wd[i] = keeps(i) ? xd[skip + i] : 0.0;
                }
                emu_launch(grid, block, [&] { dropout_mask_kernel<bf16_t>(xb.data() + skip, ob.data() + skip, len, seed, threshold); });
                expect("dropout mask bf16", wb, std::vector<bf16_t>(ob.begin() + skip, ob.begin() + skip + len), 0);
                emu_launch(grid, block, [&] { dropout_mask_kernel<double>(xd.data() + skip, od.data() + skip, len, seed, threshold); });
                expect("dropout mask double", wd, std::vector<double>(od.begin() + skip, od.begin() + skip + len), 0);
                emu_launch(grid, block, [&] { dropout_mask_kernel<bf16_t>(xb.data() + skip, xb.data() + skip, len, seed, threshold); });
                expect("dropout mask bf16 in place", wb, std::vector<bf16_t>(xb.begin() + skip, xb.begin() + skip + len), 0);
            }
        }

        // AdamW, PyTorch's order, step t
        auto p = randomVec<double>(n, -1, 1), g = randomVec<double>(n, -1, 1), m = randomVec<double>(n, -0.1, 0.1), v = randomVec<double>(n, 0, 0.01);
        double lr = 1e-3, b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 0.01;
        int t = 1 + below(100);
        std::vector<double> wp(n), wm(n), wv(n);
        double bc2 = std::sqrt(1 - std::pow(b2, t)), stepSize = lr / (1 - std::pow(b1, t));
        for (i64 i = 0; i < n; i++) {
            double pp = p[i] * (1 - lr * wd), mm = m[i] + (g[i] - m[i]) * (1 - b1), vv = v[i] * b2 + (1 - b2) * g[i] * g[i];
            wp[i] = pp - stepSize * mm / (std::sqrt(vv) / bc2 + eps);
            wm[i] = mm;
            wv[i] = vv;
        }
        emu_launch(grid, block, [&] {
            adamw_kernel<double>(p.data(), g.data(), m.data(), v.data(), n, 1 - lr * wd, b2, 1 - b1, 1 - b2, bc2, stepSize, eps);
        });
        expect("adamw p", wp, p, 1e-14);
        expect("adamw m", wm, m, 1e-14);
        expect("adamw v", wv, v, 1e-14);

        // conversions: double -> bf16 through float, ties to even, exactly as the host rounding
        auto src = randomVec<double>(n, -100, 100);
        src[0] = 1 + std::pow(2, -8);
        std::vector<bf16_t> bf(n);
        std::vector<double> bfWant(n);
        for (i64 i = 0; i < n; i++) {
            float f = (float) src[i];
            unsigned bits;
            std::memcpy(&bits, &f, 4);
            unsigned lower = bits & 0xFFFF, upper = bits & 0xFFFF0000u;
            bool up = lower > 0x8000 || (lower == 0x8000 && (upper & 0x10000));
            unsigned r = up ? upper + 0x10000 : upper;
            float rf;
            std::memcpy(&rf, &r, 4);
            bfWant[i] = rf;
        }
        emu_launch(grid, block, [&] { convert_kernel<double, bf16_t>(src.data(), bf.data(), n); });
        expect("convert double->bf16", bfWant, bf, 0);
        std::vector<float> back(n);
        emu_launch(grid, block, [&] { convert_kernel<bf16_t, float>(bf.data(), back.data(), n); });
        expect("convert bf16->float", bfWant, back, 0);

        // rope and its inverse
        int heads = 1 + below(3), half = 1 + below(6), hd = 2 * half;
        auto x = randomVec<double>((size_t) rows * heads * hd, -2, 2);
        std::vector<double> cs(rows * half), sn(rows * half), xw = std::vector<double>(x.begin(), x.end());
        for (int i = 0; i < rows * half; i++) {
            double ang = uniform(-10, 10);
            cs[i] = std::cos(ang);
            sn[i] = std::sin(ang);
        }
        for (int tt = 0; tt < rows; tt++)
            for (int h = 0; h < heads; h++)
                for (int i = 0; i < half; i++) {
                    size_t o = (size_t) tt * heads * hd + h * hd;
                    double x1 = x[o + i], x2 = x[o + half + i], c = cs[tt * half + i], s = sn[tt * half + i];
                    xw[o + i] = x1 * c - x2 * s;
                    xw[o + half + i] = x2 * c + x1 * s;
                }
        emu_launch(grid, block, [&] { rope_kernel<double>(x.data(), cs.data(), sn.data(), rows, heads, hd, 0); });
        expect("rope", xw, x, 1e-14);
        std::vector<double> orig(xw.size());
        emu_launch(grid, block, [&] { rope_kernel<double>(x.data(), cs.data(), sn.data(), rows, heads, hd, 1); });
        for (int tt = 0; tt < rows; tt++)
            for (int h = 0; h < heads; h++)
                for (int i = 0; i < half; i++) {
                    size_t o = (size_t) tt * heads * hd + h * hd;
                    double x1 = xw[o + i], x2 = xw[o + half + i], c = cs[tt * half + i], s = -sn[tt * half + i];
                    orig[o + i] = x1 * c - x2 * s;
                    orig[o + half + i] = x2 * c + x1 * s;
                }
        expect("rope inverse", orig, x, 1e-14);

        // SwiGLU
        auto gate = randomVec<double>(n, -6, 6), up = randomVec<double>(n, -2, 2), d = randomVec<double>(n, -1, 1);
        std::vector<double> o(n), dg(n), du(n), wo(n), wdg(n), wdu(n);
        for (i64 i = 0; i < n; i++) {
            double s = 1 / (1 + std::exp(-gate[i]));
            wo[i] = gate[i] * s * up[i];
            wdg[i] = d[i] * up[i] * s * (1 + gate[i] * (1 - s));
            wdu[i] = d[i] * gate[i] * s;
        }
        emu_launch(grid, block, [&] { swiglu_forward_kernel<double>(gate.data(), up.data(), o.data(), n); });
        emu_launch(grid, block, [&] { swiglu_backward_kernel<double>(d.data(), gate.data(), up.data(), dg.data(), du.data(), n); });
        expect("swiglu", wo, o, 1e-14);
        expect("swiglu dgate", wdg, dg, 1e-14);
        expect("swiglu dup", wdu, du, 1e-14);
    }
    // NF4: code[q] * scale[i/64], high nibble first, from an element offset
    const float code[16] = {-1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f, -0.28444138169288635f,
                            -0.18477343022823334f, -0.09105003625154495f, 0.0f, 0.07958029955625534f, 0.16093020141124725f,
                            0.24611230194568634f, 0.33791524171829224f, 0.44070982933044434f, 0.5626170039176941f,
                            0.7229568362236023f, 1.0f};
    // from offsets that take the 32-code groups (multiples of 32: 16 packed bytes a thread, 16-byte packs out) and
    // ones that do not, with a tail past the last group; into double (packs of 2) and bf16 (packs of 8)
    int numel = 64 * 5 + 10;
    std::vector<unsigned char> packed(numel / 2);
    for (auto& b : packed) b = (unsigned char) below(256);
    std::vector<float> scales(6);
    for (auto& s : scales) s = (float) uniform(0.01, 2);
    for (int first : {0, 1, 32, 64, 96, 130, 288}) {
        int n = numel - first;
        std::vector<double> want(n), wantBf(n);
        for (int i = 0; i < n; i++) {
            int e = first + i, b = packed[e >> 1], q = (e & 1) == 0 ? b >> 4 : b & 15;
            want[i] = (double) (code[q] * scales[e / 64]);
            wantBf[i] = of(to<bf16_t>(code[q] * scales[e / 64]));
        }
        std::vector<double> got(n);
        emu_launch({2, 1, 1}, {32, 1, 1}, [&] { nf4_dequantize_kernel<double>(packed.data(), scales.data(), nullptr, nullptr, nullptr, 0.f, first, n, got.data()); });
        expect("nf4 dequantize from " + std::to_string(first), want, got, 0);
        std::vector<bf16_t> gotBf(n);
        emu_launch({1, 1, 1}, {32, 1, 1}, [&] { nf4_dequantize_kernel<bf16_t>(packed.data(), scales.data(), nullptr, nullptr, nullptr, 0.f, first, n, gotBf.data()); });
        expect("nf4 dequantize to bf16 from " + std::to_string(first), wantBf, gotBf, 0);
    }
    // double-quantized scales: table[code] * nested[b / 256] + offset, the product and the sum each rounded to float32,
    // over three nested blocks (the last partial)
    {
        int dqNumel = 64 * 521 + 10, blocks = (dqNumel + 63) / 64;
        std::vector<unsigned char> dqPacked(dqNumel / 2), codes(blocks);
        for (auto& b : dqPacked) b = (unsigned char) below(256);
        for (auto& c : codes) c = (unsigned char) below(256);
        std::vector<float> table(256), nested((blocks + 255) / 256);
        for (auto& t : table) t = (float) uniform(-1, 1);
        for (auto& v : nested) v = (float) uniform(0.001, 0.1);
        float offset = (float) uniform(0.01, 0.05);
        for (int first : {0, 33, 64 * 257, 64 * 512 + 7}) {
            int n = dqNumel - first;
            std::vector<double> want(n), got(n);
            for (int i = 0; i < n; i++) {
                int e = first + i, b = dqPacked[e >> 1], q = (e & 1) == 0 ? b >> 4 : b & 15, blk = e / 64;
                volatile float prod = table[codes[blk]] * nested[blk / 256];
                volatile float scale = prod + offset;
                want[i] = (double) (code[q] * scale);
            }
            emu_launch({2, 1, 1}, {64, 1, 1}, [&] {
                nf4_dequantize_kernel<double>(dqPacked.data(), nullptr, codes.data(), table.data(), nested.data(), offset, first, n, got.data());
            });
            expect("nf4 dequantize, double-quantized scales, from " + std::to_string(first), want, got, 0);
        }
    }
}

// ------------------------------------------------------------------ reductions and RMSNorm

/** The host's chunking (Reductions.Chunking), with a random cap to vary it. */
static void chunking(i64 rows, i64& perChunk, int& chunks) {
    i64 c = std::max<i64>(1, std::min<i64>(1 + below(8), (rows + 31) / 32 + below(3)));
    perChunk = std::max<i64>(1, (rows + c - 1) / c);
    chunks = (int) std::max<i64>(1, (rows + perChunk - 1) / perChunk);
}

static void reductions() {
    for (int trial = 0; trial < 15; trial++) {
        i64 rows = below(120), cols = 1 + below(70);
        auto x = randomVec<float>(rows * cols, -1, 1);
        auto acc = randomVec<double>(cols, -1, 1);
        std::vector<double> want(acc.begin(), acc.end());
        for (i64 r = 0; r < rows; r++)
            for (i64 j = 0; j < cols; j++) want[j] += (double) x[r * cols + j];
        i64 per;
        int chunks;
        chunking(rows, per, chunks);
        std::vector<double> partial(chunks * cols);
        emu_launch({(unsigned) ((cols + 31) / 32), (unsigned) chunks, 1}, {32, 8, 1},
                   [&] { column_partial_sums_kernel<float>(x.data(), rows, cols, per, partial.data()); });
        emu_launch({2, 1, 1}, {32, 1, 1}, [&] { reduce_partials_kernel<double>(partial.data(), chunks, cols, acc.data(), 1); });
        expect("sumRows accumulate", want, acc, 1e-12);

        i64 n = 1 + below(3000);
        auto y = randomVec<double>(n, -1, 1);
        y[0] = trial == 3 ? NAN : y[0];
        double ss = 0;
        for (double v : y) ss += v * v;
        int blocks = 1 + below(3);
        std::vector<double> part(blocks), total(1);
        emu_launch({(unsigned) blocks, 1, 1}, {trial == 0 ? 256u : 64u, 1, 1}, [&] { square_partial_sums_kernel<double>(y.data(), n, part.data()); });
        emu_launch({1, 1, 1}, {32, 1, 1}, [&] { reduce_partials_kernel<double>(part.data(), blocks, 1, total.data(), 0); });
        expect("sumOfSquares", {ss}, total, 1e-12);
    }
}

template <typename T, typename W> static void rmsNorm(double tolerance, const char* name) {
    for (int trial = 0; trial < 12; trial++) {
        i64 n = 1 + below(9);
        int d = trial % 4 == 0 ? 300 : 1 + below(200);
        double eps = 1e-5;
        auto x = randomVec<T>(n * d, -2, 2), dy = randomVec<T>(n * d, -1, 1);
        auto w = randomVec<W>(d, 0.5, 1.5), dw = randomVec<W>(d, -1, 1);
        std::vector<T> y(n * d), rstd(n), dx(n * d);
        std::vector<double> wy(n * d), wr(n), wdx(n * d), wdw(d);
        for (int j = 0; j < d; j++) wdw[j] = of(dw[j]);
        for (i64 i = 0; i < n; i++) {
            double ss = 0;
            for (int j = 0; j < d; j++) ss += of(x[i * d + j]) * of(x[i * d + j]);
            double r = 1 / std::sqrt(ss / d + eps), dot = 0;
            wr[i] = r;
            for (int j = 0; j < d; j++) {
                double xh = of(x[i * d + j]) * r, g = of(dy[i * d + j]) * of(w[j]);
                wy[i * d + j] = of(w[j]) * xh;
                dot += g * xh;
                wdw[j] += of(dy[i * d + j]) * xh;
            }
            dot /= d;
            for (int j = 0; j < d; j++) wdx[i * d + j] = r * (of(dy[i * d + j]) * of(w[j]) - of(x[i * d + j]) * r * dot);
        }
        Dim3 grid{(unsigned) (1 + below(3)), 1, 1}, block{(unsigned) rowThreads(d, trial == 0), 1, 1};
        emu_launch(grid, block, [&] { rms_norm_forward_kernel<T, W>(x.data(), w.data(), eps, y.data(), rstd.data(), n, d); });
        expect(std::string(name) + " rmsnorm y", wy, y, tolerance);
        expect(std::string(name) + " rmsnorm rstd", wr, rstd, tolerance);
        emu_launch(grid, block, [&] { rms_norm_backward_kernel<T, W>(dy.data(), x.data(), w.data(), rstd.data(), nullptr, dx.data(), n, d); });
        expect(std::string(name) + " rmsnorm dx", wdx, dx, tolerance);
        // with a residual gradient added in the same pass
        auto res = randomVec<T>(n * d, -1, 1);
        std::vector<double> wdxr(n * d);
        for (i64 i = 0; i < n * d; i++) wdxr[i] = wdx[i] + of(res[i]);
        emu_launch(grid, block, [&] { rms_norm_backward_kernel<T, W>(dy.data(), x.data(), w.data(), rstd.data(), res.data(), dx.data(), n, d); });
        expect(std::string(name) + " rmsnorm dx + residual", wdxr, dx, tolerance);
        i64 per;
        int chunks;
        chunking(n, per, chunks);
        std::vector<double> partial(chunks * d);
        emu_launch({(unsigned) ((d + 31) / 32), (unsigned) chunks, 1}, {32, 8, 1},
                   [&] { rms_norm_weight_partials_kernel<T>(dy.data(), x.data(), rstd.data(), n, d, per, partial.data()); });
        emu_launch({1, 1, 1}, {64, 1, 1}, [&] { reduce_partials_kernel<W>(partial.data(), chunks, d, dw.data(), 1); });
        const double storedW = sizeof(W) == 2 ? 8e-3 : tolerance; // dW is rounded to W (bf16: 8 significant bits)
        expect(std::string(name) + " rmsnorm dw", wdw, dw, storedW);
    }
}

// ------------------------------------------------------------------ cross-entropy and embedding

/** dTolerance: for the gradient, which 16-bit logits store rounded (default: tolerance). */
template <typename T, typename S> static void crossEntropy(double tolerance, const char* name, double dTolerance = -1) {
    if (dTolerance < 0) dTolerance = tolerance;
    for (int trial = 0; trial < 10; trial++) {
        // small vocabularies, odd ones (scalar path) and multiples of 8 (16-byte packs for 16-bit logits)
        i64 n = 1 + below(6), vocab = trial % 3 == 0 ? 1 + below(3) : trial % 3 == 1 ? 1 + below(700) : 8 * (1 + below(300));
        auto logits = randomVec<T>(n * vocab, -8, 8);
        if (vocab > 2) logits[1] = to<T>(-INFINITY);
        std::vector<int> labels(n);
        for (auto& l : labels) l = below(5) == 0 ? -100 : below((int) vocab);
        std::vector<S> loss(n), lse(n);
        std::vector<double> wl(n), wlse(n), wd(n * vocab);
        double scale = 0.25;
        for (i64 i = 0; i < n; i++) {
            double m = -INFINITY, s = 0;
            for (i64 c = 0; c < vocab; c++) m = std::max(m, of(logits[i * vocab + c]));
            for (i64 c = 0; c < vocab; c++) s += std::exp(of(logits[i * vocab + c]) - m);
            wlse[i] = m + std::log(s);
            wl[i] = labels[i] == -100 ? 0 : wlse[i] - of(logits[i * vocab + labels[i]]);
            for (i64 c = 0; c < vocab; c++)
                wd[i * vocab + c] = labels[i] == -100 ? 0 : scale * (std::exp(of(logits[i * vocab + c]) - wlse[i]) - (c == labels[i]));
        }
        emu_launch({(unsigned) (1 + below(3)), 1, 1}, {CE_THREADS, 1, 1},
                   [&] { cross_entropy_forward_kernel<T, S>(logits.data(), labels.data(), -100, loss.data(), lse.data(), n, vocab); });
        expect(std::string(name) + " CE loss", wl, loss, tolerance);
        expect(std::string(name) + " CE lse", wlse, lse, tolerance);
        emu_launch({(unsigned) (1 + below(2)), (unsigned) (1 + below(3)), 1}, {64, 1, 1}, [&] {
            cross_entropy_backward_kernel<T, S>(logits.data(), labels.data(), lse.data(), -100, scale, logits.data(), n, vocab);
        });
        expect(std::string(name) + " CE dlogits in place", wd, logits, dTolerance);
    }
}

static void embedding() {
    for (int trial = 0; trial < 10; trial++) {
        int vocab = 1 + below(50), dim = 1 + below(300), n = 1 + below(40);
        std::vector<int> ids(n);
        for (auto& id : ids) id = below(std::min(vocab, 6));
        auto table = randomVec<bf16_t>((size_t) vocab * dim, -1, 1);
        std::vector<float> out((size_t) n * dim);
        std::vector<double> want((size_t) n * dim);
        for (int i = 0; i < n; i++)
            for (int c = 0; c < dim; c++) want[(size_t) i * dim + c] = of(table[(size_t) ids[i] * dim + c]);
        emu_launch({2, 1, 1}, {64, 1, 1}, [&] { embedding_forward_kernel<bf16_t, float>(table.data(), ids.data(), out.data(), n, dim); });
        expect("embedding bf16 -> float", want, out, 0);

        auto dOut = randomVec<float>((size_t) n * dim, -1, 1);
        auto dTable = randomVec<double>((size_t) vocab * dim, -1, 1);
        std::vector<double> wt(dTable.begin(), dTable.end());
        for (int i = 0; i < n; i++)
            for (int c = 0; c < dim; c++) wt[(size_t) ids[i] * dim + c] += dOut[(size_t) i * dim + c];
        // the host's grouping (EmbeddingOp.Grouping): positions sorted by (id, position)
        std::vector<long long> keys(n);
        for (int i = 0; i < n; i++) keys[i] = ((long long) ids[i] << 32) | i;
        std::sort(keys.begin(), keys.end());
        std::vector<int> unique, starts, positions(n);
        for (int i = 0; i < n; i++) {
            int id = (int) (keys[i] >> 32);
            positions[i] = (int) (keys[i] & 0xffffffff);
            if (unique.empty() || unique.back() != id) {
                unique.push_back(id);
                starts.push_back(i);
            }
        }
        starts.push_back(n);
        int threads = rowThreads(dim);
        emu_launch({(unsigned) std::min<size_t>(unique.size(), 2), (unsigned) ((dim + threads - 1) / threads), 1}, {(unsigned) threads, 1, 1}, [&] {
            embedding_backward_kernel<float, double>(dOut.data(), unique.data(), starts.data(), positions.data(), dTable.data(),
                                                     (i64) unique.size(), dim);
        });
        expect("embedding backward", wt, dTable, 1e-14);
    }
}

// ------------------------------------------------------------------ attention

struct AttnProblem {
    int batch, seq, kvSeq, hq, hkv, hd, tile, threads;
    bool packed;
};

static bool visible(const std::vector<int>& seg, int b, int seq, int qpos, int j) {
    return j <= qpos && (seg.empty() || seg[b * seq + qpos] == seg[b * seq + j]);
}

template <typename T> static void attention(const AttnProblem& p, double tolerance) {
    typedef typename Acc<T>::type A;
    const int B = p.batch, S = p.seq, K = p.kvSeq, H = p.hq, G = p.hkv, D = p.hd, off = K - S;
    auto q = randomVec<T>((size_t) B * S * H * D, -2, 2), k = randomVec<T>((size_t) B * K * G * D, -2, 2);
    auto v = randomVec<T>((size_t) B * K * G * D, -1, 1), dout = randomVec<T>((size_t) B * S * H * D, -1, 1);
    std::vector<int> seg;
    if (p.packed) {
        seg.resize((size_t) B * S);
        for (int b = 0; b < B; b++)
            for (int t = 0, id = 0; t < S; t++) {
                if (t > 0 && below(4) == 0) id++;
                seg[b * S + t] = id;
            }
    }
    const int* segp = seg.empty() ? nullptr : seg.data();
    const double scale = 1 / std::sqrt((double) D);
    std::vector<T> out(q.size()), lse((size_t) B * H * S);
    const unsigned tiles = (unsigned) ((S + p.tile - 1) / p.tile);
    const Dim3 block{(unsigned) p.threads, 1, 1};
    emu_launch({tiles, (unsigned) H, (unsigned) B}, block, [&] {
        attention_forward_kernel<T>(q.data(), k.data(), v.data(), segp, scale, out.data(), lse.data(), B, S, K, H, G, D, p.tile);
    });
    std::vector<double> P((size_t) B * H * S * K, 0.0), rout(q.size()), rlse(lse.size());
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            int g = h / (H / G);
            for (int i = 0; i < S; i++) {
                std::vector<double> s(K, -INFINITY);
                double m = -INFINITY, sum = 0;
                for (int j = 0; j < K; j++) {
                    if (!visible(seg, b, S, off + i, j)) continue;
                    double dot = 0;
                    for (int c = 0; c < D; c++) dot += of(q[(((size_t) b * S + i) * H + h) * D + c]) * of(k[(((size_t) b * K + j) * G + g) * D + c]);
                    s[j] = dot * scale;
                    m = std::max(m, s[j]);
                }
                for (int j = 0; j < K; j++) if (s[j] > -INFINITY) sum += std::exp(s[j] - m);
                double l = m + std::log(sum);
                rlse[((size_t) b * H + h) * S + i] = l;
                for (int j = 0; j < K; j++) P[(((size_t) b * H + h) * S + i) * K + j] = s[j] > -INFINITY ? std::exp(s[j] - l) : 0;
                for (int c = 0; c < D; c++) {
                    double o = 0;
                    for (int j = 0; j < K; j++) o += P[(((size_t) b * H + h) * S + i) * K + j] * of(v[(((size_t) b * K + j) * G + g) * D + c]);
                    rout[(((size_t) b * S + i) * H + h) * D + c] = o;
                }
            }
        }
    char tag[160];
    std::snprintf(tag, sizeof tag, "attention b=%d seq=%d kvSeq=%d hq=%d hkv=%d hd=%d tile=%d threads=%d packed=%d", B, S, K, H, G, D,
                  p.tile, p.threads, (int) p.packed);
    expect(std::string(tag) + " out", rout, out, tolerance);
    expect(std::string(tag) + " lse", rlse, lse, tolerance);
    if (K != S) return;

    std::vector<A> delta((size_t) B * H * S);
    const i64 rows = (i64) B * S * H;
    emu_launch({(unsigned) std::max<i64>(1, std::min<i64>(2, (rows + 7) / 8)), 1, 1}, {(unsigned) (p.threads == 256 ? 256 : 64), 1, 1},
               [&] { attention_delta_kernel<T>(dout.data(), out.data(), delta.data(), B, S, H, D); });
    std::vector<double> rdelta(delta.size());
    for (int b = 0; b < B; b++)
        for (int t = 0; t < S; t++)
            for (int h = 0; h < H; h++) {
                double a = 0;
                for (int c = 0; c < D; c++) a += of(dout[(((size_t) b * S + t) * H + h) * D + c]) * of(out[(((size_t) b * S + t) * H + h) * D + c]);
                rdelta[((size_t) b * H + h) * S + t] = a;
            }
    expect(std::string(tag) + " delta", rdelta, delta, tolerance);

    std::vector<T> dq(q.size()), dk(k.size()), dv(v.size());
    emu_launch({tiles, (unsigned) G, (unsigned) B}, block, [&] {
        attention_backward_dkdv_kernel<T>(dout.data(), q.data(), k.data(), v.data(), segp, scale, lse.data(), delta.data(),
                                          dk.data(), dv.data(), B, S, H, G, D, p.tile);
    });
    emu_launch({tiles, (unsigned) H, (unsigned) B}, block, [&] {
        attention_backward_dq_kernel<T>(dout.data(), q.data(), k.data(), v.data(), segp, scale, lse.data(), delta.data(),
                                        dq.data(), B, S, H, G, D, p.tile);
    });
    std::vector<double> rdq(q.size(), 0.0), rdk(k.size(), 0.0), rdv(v.size(), 0.0);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            int g = h / (H / G);
            for (int i = 0; i < S; i++) {
                double Di = rdelta[((size_t) b * H + h) * S + i];
                for (int j = 0; j <= i; j++) {
                    if (!visible(seg, b, S, i, j)) continue;
                    double pij = P[(((size_t) b * H + h) * S + i) * K + j], dp = 0;
                    for (int c = 0; c < D; c++) dp += of(dout[(((size_t) b * S + i) * H + h) * D + c]) * of(v[(((size_t) b * S + j) * G + g) * D + c]);
                    double ds = pij * (dp - Di) * scale;
                    for (int c = 0; c < D; c++) {
                        size_t qi = (((size_t) b * S + i) * H + h) * D + c, kj = (((size_t) b * S + j) * G + g) * D + c;
                        rdv[kj] += pij * of(dout[qi]);
                        rdq[qi] += ds * of(k[kj]);
                        rdk[kj] += ds * of(q[qi]);
                    }
                }
            }
        }
    expect(std::string(tag) + " dq", rdq, dq, tolerance);
    expect(std::string(tag) + " dk", rdk, dk, tolerance);
    expect(std::string(tag) + " dv", rdv, dv, tolerance);
}

static void attentionCases() {
    const int heads[][2] = {{1, 1}, {2, 2}, {4, 2}, {6, 2}, {4, 1}, {8, 2}, {3, 1}};
    const int tiles[] = {1, 2, 4, 8, 16, 64};
    for (int trial = 0; trial < 140; trial++) {
        // one thread per block covers shapes and tile sizes cheaply; a few small problems run with real warps
        // (32 threads) and full blocks (256), whose barriers are costly to emulate
        AttnProblem p;
        p.threads = trial % 70 == 1 ? 256 : trial % 10 == 0 ? 32 : 1;
        const bool small = p.threads > 1;
        p.batch = small ? 1 : 1 + below(2);
        p.seq = 1 + below(small ? 12 : 20);
        p.kvSeq = trial % 3 == 0 ? p.seq + below(9) : p.seq;
        const int* hh = heads[below(small ? 5 : 7)];
        p.hq = small ? std::min(hh[0], 4) : hh[0];
        p.hkv = hh[1] > p.hq ? p.hq : hh[1];
        if (p.hq % p.hkv != 0) p.hkv = 1;
        p.hd = 1 + below(12);
        p.tile = small ? tiles[3 + below(3)] : tiles[below(6)];
        p.packed = p.kvSeq == p.seq && below(2) == 0;
        attention<double>(p, 1e-12);
        attention<float>(p, 2e-5);
    }
}

int main() {
    elementwise();
    reductions();
    rmsNorm<double, double>(1e-12, "double");
    rmsNorm<float, bf16_t>(2e-5, "float/bf16 weight");
    crossEntropy<double, double>(1e-12, "double");
    crossEntropy<float, double>(2e-5, "float/double");
    crossEntropy<bf16_t, double>(2e-6, "bf16/double", 1e-3); // per-element work in float; the gradient stored as bf16
    embedding();
    attentionCases();
    std::printf("OK %ld\n", checks);
    return 0;
}
