/*
 * Row-wise and column-wise reductions: RMSNorm, cross-entropy forward, column sums and the sum of squares.
 *
 * Row kernels run one work-group of RED_WG (a power of two) work-items per row: each work-item folds a strided
 * slice of the row, then a fixed-shape tree in local memory combines the partials. Column sums are two-pass:
 * partial sums over fixed chunks of COLSUM_ROWS rows, then the partials in chunk order. Every order is a
 * function of the shapes alone, so results are identical run to run (no atomics anywhere).
 */
#ifndef RED_WG
#define RED_WG 256
#endif
#ifndef COLSUM_ROWS
#define COLSUM_ROWS 64
#endif

/* Sums v over the work-group (all work-items must call it); every work-item gets the total. */
inline real group_sum(real v, local real *scratch) {
    const int lid = get_local_id(0);
    scratch[lid] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = RED_WG / 2; s > 0; s >>= 1) {
        if (lid < s) scratch[lid] += scratch[lid + s];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    const real total = scratch[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return total;
}

__attribute__((reqd_work_group_size(RED_WG, 1, 1)))
kernel void rmsnorm_forward(int d, real eps, TENSOR(x), TENSOR(w), TENSOR(y), TENSOR(rstd)) {
    local real scratch[RED_WG];
    const long row = get_group_id(0);
    const int lid = get_local_id(0);
    const long base = row * d;
    real ss = 0;
    for (int j = lid; j < d; j += RED_WG) {
        const real v = LD(x, base + j);
        ss = MULADD(v, v, ss);
    }
    ss = group_sum(ss, scratch);
    const real r = 1 / sqrt(ss / d + eps);
    for (int j = lid; j < d; j += RED_WG) ST(y, base + j, LD(w, j) * (LD(x, base + j) * r));
    if (lid == 0) ST(rstd, row, r);
}

/* dx_i = rstd_i * (g_i - xhat_i * mean(g_i * xhat_i)), g = dy * w, xhat = x * rstd */
__attribute__((reqd_work_group_size(RED_WG, 1, 1)))
kernel void rmsnorm_backward(int d, TENSOR(dy), TENSOR(x), TENSOR(w), TENSOR(rstd), TENSOR(dx)) {
    local real scratch[RED_WG];
    const long row = get_group_id(0);
    const int lid = get_local_id(0);
    const long base = row * d;
    const real r = LD(rstd, row);
    real dot = 0;
    for (int j = lid; j < d; j += RED_WG) dot += LD(dy, base + j) * LD(w, j) * (LD(x, base + j) * r);
    dot = group_sum(dot, scratch) / d;
    for (int j = lid; j < d; j += RED_WG) {
        const real xh = LD(x, base + j) * r;
        ST(dx, base + j, r * (LD(dy, base + j) * LD(w, j) - xh * dot));
    }
}

/*
 * BF16 fast paths of RMSNorm (bf16x8_load/store of elementwise.cl): 8 values of a row per access, for BF16 x, w, y
 * (dy, dx) whose rows start at multiples of 8 (the host checks). The same float expressions as the kernels above; the
 * sum of squares (dot products) is gathered 8 values per work-item, then by the same fixed tree.
 */
__attribute__((reqd_work_group_size(RED_WG, 1, 1)))
kernel void rmsnorm_forward_bf16x8(int d, real eps, TENSOR(x), TENSOR(w), TENSOR(y), TENSOR(rstd)) {
    local real scratch[RED_WG];
    const long base = get_group_id(0) * (long) d;
    const int lid = get_local_id(0);
    real ss = 0;
    for (int j = 8 * lid; j < d; j += 8 * RED_WG) {
        const float8 v = bf16x8_load(x, x_off + base + j);
        ss = MULADD(v.s0, v.s0, ss); ss = MULADD(v.s1, v.s1, ss); ss = MULADD(v.s2, v.s2, ss); ss = MULADD(v.s3, v.s3, ss);
        ss = MULADD(v.s4, v.s4, ss); ss = MULADD(v.s5, v.s5, ss); ss = MULADD(v.s6, v.s6, ss); ss = MULADD(v.s7, v.s7, ss);
    }
    ss = group_sum(ss, scratch);
    const real r = 1 / sqrt(ss / d + eps);
    for (int j = 8 * lid; j < d; j += 8 * RED_WG)
        bf16x8_store(y, y_off + base + j, bf16x8_load(w, w_off + j) * (bf16x8_load(x, x_off + base + j) * (float) r));
    if (lid == 0) ST(rstd, get_group_id(0), r);
}

__attribute__((reqd_work_group_size(RED_WG, 1, 1)))
kernel void rmsnorm_backward_bf16x8(int d, TENSOR(dy), TENSOR(x), TENSOR(w), TENSOR(rstd), TENSOR(dx)) {
    local real scratch[RED_WG];
    const long base = get_group_id(0) * (long) d;
    const int lid = get_local_id(0);
    const float r = (float) LD(rstd, get_group_id(0));
    real dot = 0;
    for (int j = 8 * lid; j < d; j += 8 * RED_WG) {
        const float8 g = bf16x8_load(dy, dy_off + base + j) * bf16x8_load(w, w_off + j) * (bf16x8_load(x, x_off + base + j) * r);
        dot += g.s0; dot += g.s1; dot += g.s2; dot += g.s3; dot += g.s4; dot += g.s5; dot += g.s6; dot += g.s7;
    }
    const float mean = (float) (group_sum(dot, scratch) / d);
    for (int j = 8 * lid; j < d; j += 8 * RED_WG) {
        const float8 xh = bf16x8_load(x, x_off + base + j) * r;
        bf16x8_store(dx, dx_off + base + j, r * (bf16x8_load(dy, dy_off + base + j) * bf16x8_load(w, w_off + j) - xh * mean));
    }
}

/* Combines two (max, sum of exp(x - max)) pairs. */
inline void lse_combine(real *m, real *s, real m2, real s2) {
    if (s2 == 0) return;
    if (*s == 0) {
        *m = m2;
        *s = s2;
        return;
    }
    const real mx = fmax(*m, m2);
    *s = *s * exp(*m - mx) + s2 * exp(m2 - mx);
    *m = mx;
}

/* Per row: lse = log sum exp(logits), loss = lse - logits[label] (0 where the label is ignoreIndex). */
__attribute__((reqd_work_group_size(RED_WG, 1, 1)))
kernel void cross_entropy_forward(int vocab, int ignoreIndex, TENSOR(logits), INTS(labels), TENSOR(loss), TENSOR(lse)) {
    local real sm[RED_WG], ss[RED_WG];
    const long row = get_group_id(0);
    const int lid = get_local_id(0);
    const long base = row * vocab;
    real m = -INFINITY, s = 0;
    for (int j = lid; j < vocab; j += RED_WG) {
        const real v = LD(logits, base + j);
        if (v == -INFINITY) continue; /* adds 0; before any finite value exp(-inf - -inf) would be NaN */
        if (v > m) {
            s = s == 0 ? 0 : s * exp(m - v);
            m = v;
        }
        s += exp(v - m);
    }
    sm[lid] = m;
    ss[lid] = s;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int st = RED_WG / 2; st > 0; st >>= 1) {
        if (lid < st) {
            real a = sm[lid], b = ss[lid];
            lse_combine(&a, &b, sm[lid + st], ss[lid + st]);
            sm[lid] = a;
            ss[lid] = b;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (lid == 0) {
        const real l = sm[0] + log(ss[0]);
        ST(lse, row, l);
        const int y = INT_AT(labels, row);
        ST(loss, row, y == ignoreIndex ? 0 : l - LD(logits, base + y));
    }
}

/* partial[c, j] = sum of x[i, j] over rows i of chunk c */
kernel void colsum_partial(int rows, int cols, TENSOR(x), global real *partial) {
    const int j = get_global_id(0), c = get_global_id(1);
    if (j >= cols) return;
    const int lo = c * COLSUM_ROWS, hi = min(rows, lo + COLSUM_ROWS);
    real s = 0;
    for (int i = lo; i < hi; i++) s += LD(x, (long) i * cols + j);
    partial[(long) c * cols + j] = s;
}

/* partial[c, j] = sum of dy[i, j] * x[i, j] * rstd[i] over rows i of chunk c (RMSNorm's weight gradient) */
kernel void rmsnorm_dweight_partial(int rows, int cols, TENSOR(dy), TENSOR(x), TENSOR(rstd), global real *partial) {
    const int j = get_global_id(0), c = get_global_id(1);
    if (j >= cols) return;
    const int lo = c * COLSUM_ROWS, hi = min(rows, lo + COLSUM_ROWS);
    real s = 0;
    for (int i = lo; i < hi; i++) {
        const long at = (long) i * cols + j;
        s += LD(dy, at) * (LD(x, at) * LD(rstd, i));
    }
    partial[(long) c * cols + j] = s;
}

/* out[j] (+)= sum over chunks c, in order, of partial[c, j] */
kernel void colsum_final(int chunks, int cols, int accumulate, global const real *partial, TENSOR(out)) {
    const int j = get_global_id(0);
    if (j >= cols) return;
    real s = 0;
    for (int c = 0; c < chunks; c++) s += partial[(long) c * cols + j];
    if (accumulate) s = LD(out, j) + s;
    ST(out, j, s);
}

/* partial[g] = sum of x^2 over the elements g*RED_WG + lid + k*stride, folded by a fixed tree */
__attribute__((reqd_work_group_size(RED_WG, 1, 1)))
kernel void sum_squares_partial(long n, TENSOR(x), global real *partial) {
    local real scratch[RED_WG];
    const long stride = get_global_size(0);
    real s = 0;
    for (long i = get_global_id(0); i < n; i += stride) {
        const real v = LD(x, i);
        s = MULADD(v, v, s);
    }
    s = group_sum(s, scratch);
    if (get_local_id(0) == 0) partial[get_group_id(0)] = s;
}

/*
 * The sum of squares without fp64 (sumOfSquares on a device that has no doubles): each work-item and the work-group
 * tree keep a float pair (hi, lo) whose sum carries about twice float's precision. A square is split exactly into
 * its rounded value and its rounding error (an fma where the device has a fast one, else Dekker's product), each
 * addition into hi gives its exact error (Knuth's two-sum) to lo, and the host adds the groups' pairs in double.
 * Contraction is off in these functions: a fused a*b+c in place of a written multiply and add would change the
 * error terms the algorithms rely on.
 */
inline float2 two_sum(float a, float b) {
#pragma OPENCL FP_CONTRACT OFF
    const float s = a + b, bv = s - a;
    return (float2)(s, (a - (s - bv)) + (b - bv));
}

/* v*v as (rounded square, its exact error) */
inline float2 two_square(float v) {
#pragma OPENCL FP_CONTRACT OFF
    const float p = v * v;
#ifdef FP_FAST_FMAF
    return (float2)(p, fma(v, v, -p));
#else
    const float c = 4097.0f * v, hi = c - (c - v), lo = v - hi;  /* Veltkamp's split: hi and lo of 12 bits each */
    return (float2)(p, ((hi * hi - p) + 2.0f * hi * lo) + lo * lo);
#endif
}

/* (a.x + a.y) + (b.x + b.y) as a pair, renormalised so that |lo| is within half an ulp of hi */
inline float2 pair_add(float2 a, float2 b) {
#pragma OPENCL FP_CONTRACT OFF
    const float2 s = two_sum(a.x, b.x);
    if (!isfinite(s.x)) return (float2)(s.x, 0.0f); /* past FLT_MAX: inf (its error term would be inf - inf); NaN stays NaN */
    const float lo = s.y + a.y + b.y, hi = s.x + lo;
    return (float2)(hi, lo - (hi - s.x));
}

#ifndef REAL_IS_DOUBLE
__attribute__((reqd_work_group_size(RED_WG, 1, 1)))
kernel void sum_squares_partial_pairs(long n, TENSOR(x), global float *partial) {
    local float2 scratch[RED_WG];
    const long stride = get_global_size(0);
    const int lid = get_local_id(0);
    float2 s = (float2)(0.0f, 0.0f);
    for (long i = get_global_id(0); i < n; i += stride) s = pair_add(s, two_square(LD(x, i)));
    scratch[lid] = s;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int h = RED_WG / 2; h > 0; h >>= 1) {
        if (lid < h) scratch[lid] = pair_add(scratch[lid], scratch[lid + h]);
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (lid == 0) {
        partial[2 * get_group_id(0)] = scratch[0].x;
        partial[2 * get_group_id(0) + 1] = scratch[0].y;
    }
}
#endif
