/*
 * Elementwise maps, row broadcasts, embedding gather/scatter and AdamW: one work-item per element (or per
 * element pair / row element), the element count in `n`.
 */

kernel void ew_add(long n, TENSOR(a), TENSOR(b), TENSOR(out)) {
    const long i = get_global_id(0);
    if (i < n) ST(out, i, LD(a, i) + LD(b, i));
}

/*
 * BF16 fast paths of ew_add and SwiGLU: 8 elements (16 bytes of each tensor) per work-item, for calls whose tensors
 * are all BF16 with offsets and counts multiples of 8 (the host checks). The same float arithmetic as the generic
 * kernels, without their per-element storage-type dispatch and 2-byte accesses.
 */
inline float8 bf16x8_load(global const uchar *p, long at) {
    const uint4 u = *(global const uint4 *) ((global const ushort *) p + at);
    return (float8) (as_float(u.x << 16), as_float(u.x & 0xFFFF0000u), as_float(u.y << 16), as_float(u.y & 0xFFFF0000u),
                     as_float(u.z << 16), as_float(u.z & 0xFFFF0000u), as_float(u.w << 16), as_float(u.w & 0xFFFF0000u));
}

inline void bf16x8_store(global uchar *p, long at, float8 v) {
    uint4 u;
    u.x = (uint) float_to_bf16(v.s0) | ((uint) float_to_bf16(v.s1) << 16);
    u.y = (uint) float_to_bf16(v.s2) | ((uint) float_to_bf16(v.s3) << 16);
    u.z = (uint) float_to_bf16(v.s4) | ((uint) float_to_bf16(v.s5) << 16);
    u.w = (uint) float_to_bf16(v.s6) | ((uint) float_to_bf16(v.s7) << 16);
    *(global uint4 *) ((global ushort *) p + at) = u;
}

kernel void ew_add_bf16x8(long n8, TENSOR(a), TENSOR(b), TENSOR(out)) {
    const long i = get_global_id(0);
    if (i < n8) bf16x8_store(out, out_off + 8 * i, bf16x8_load(a, a_off + 8 * i) + bf16x8_load(b, b_off + 8 * i));
}

kernel void swiglu_forward_bf16x8(long n8, TENSOR(gate), TENSOR(up), TENSOR(out)) {
    const long i = get_global_id(0);
    if (i >= n8) return;
    const float8 g = bf16x8_load(gate, gate_off + 8 * i);
    bf16x8_store(out, out_off + 8 * i, g * (1.f / (1.f + exp(-g))) * bf16x8_load(up, up_off + 8 * i));
}

kernel void swiglu_backward_bf16x8(long n8, TENSOR(dOut), TENSOR(gate), TENSOR(up), TENSOR(dGate), TENSOR(dUp)) {
    const long i = get_global_id(0);
    if (i >= n8) return;
    const float8 d = bf16x8_load(dOut, dOut_off + 8 * i), g = bf16x8_load(gate, gate_off + 8 * i), u = bf16x8_load(up, up_off + 8 * i);
    const float8 s = 1.f / (1.f + exp(-g));
    bf16x8_store(dGate, dGate_off + 8 * i, d * u * s * (1.f + g * (1.f - s)));
    bf16x8_store(dUp, dUp_off + 8 * i, d * (g * s));
}

kernel void ew_axpy(long n, real alpha, TENSOR(x), TENSOR(y)) {
    const long i = get_global_id(0);
    if (i < n) ST(y, i, LD(y, i) + alpha * LD(x, i));
}

/* The 24-bit draw of element i under seed (dev.jsloth.api.ops.Dropout#draw: splitmix64 of seed + (i + 1) * golden). */
inline uint dropout_draw(ulong seed, long i) {
    ulong z = seed + (ulong) (i + 1) * 0x9E3779B97F4A7C15UL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
    z ^= z >> 31;
    return (uint) (z >> 40);
}

/* Dropout's mask: out = x where element i's draw is at least threshold, else 0 (a load and a store of one type:
 * exact). out may be x. */
kernel void ew_dropout_mask(long n, ulong seed, uint threshold, TENSOR(x), TENSOR(out)) {
    const long i = get_global_id(0);
    if (i < n) ST(out, i, dropout_draw(seed, i) >= threshold ? LD(x, i) : (real) 0);
}

kernel void ew_scale(long n, real alpha, TENSOR(x)) {
    const long i = get_global_id(0);
    if (i < n) ST(x, i, LD(x, i) * alpha);
}

kernel void ew_fill(long n, real value, TENSOR(x)) {
    const long i = get_global_id(0);
    if (i < n) ST(x, i, value);
}

/* dst = src converted; src may be NF4 (dequantized) */
kernel void ew_copy(long n, QTENSOR(src), TENSOR(dst)) {
    const long i = get_global_id(0);
    if (i < n) ST(dst, i, LDQ(src, i));
}

/*
 * LoRA's F32 factors and rank-r products for the bf16 tensor-core GEMM (OpenClKernels.lowRankSplit): each value v as
 * hi = bf16(v), mid = bf16(v - hi), lo = bf16(v - hi - mid). Writes `parts` copies of the stored n / cols x cols
 * matrix, copy p the hi, mid or lo values as the two bits p of `select` say (0, 1, 2), one after the other (part p at
 * p * n) or, side_by_side, each row's copies in turn (row r, part p at (r * parts + p) * cols).
 */
kernel void lowrank_split(long n, long cols, int parts, int select, int side_by_side, TENSOR(src), TENSOR(dst)) {
    const long i = get_global_id(0);
    if (i >= n) return;
    const float v = (float) LD(src, i);
    const float hi = bf16_to_float(float_to_bf16(v));
    const float rest = isinf(hi) ? 0.0f : v - hi; /* an infinite v (or one rounding to it) is hi alone */
    const float mid = bf16_to_float(float_to_bf16(rest));
    const float lo = bf16_to_float(float_to_bf16(rest - mid));
    const long r = i / cols, c = i - r * cols;
    for (int p = 0; p < parts; p++) {
        const long at = side_by_side ? (r * parts + p) * cols + c : p * n + i;
        const int which = (select >> (2 * p)) & 3;
        ST(dst, at, (real) (which == 0 ? hi : which == 1 ? mid : lo));
    }
}

/* c = the sum of `parts` partial products (+ beta * c), stacked (part p at p * n) or side by side (row r's part p at
 * (r * parts + p) * cols); beta 0: c is not read. */
kernel void lowrank_fold(long n, long cols, int parts, int side_by_side, real beta, TENSOR(partials), TENSOR(c)) {
    const long i = get_global_id(0);
    if (i >= n) return;
    const long r = i / cols, col = i - r * cols;
    float v = 0;
    for (int p = parts - 1; p >= 0; p--) v += (float) LD(partials, side_by_side ? (r * parts + p) * cols + col : p * n + i);
    if (beta != 0) v += (float) beta * (float) LD(c, i);
    ST(c, i, (real) v);
}

kernel void ew_add_row_vector(long n, int cols, TENSOR(x), TENSOR(bias)) {
    const long i = get_global_id(0);
    if (i < n) ST(x, i, LD(x, i) + LD(bias, i % cols));
}

inline real sigmoid(real v) {
    return 1 / (1 + exp(-v));
}

kernel void swiglu_forward(long n, TENSOR(gate), TENSOR(up), TENSOR(out)) {
    const long i = get_global_id(0);
    if (i >= n) return;
    const real g = LD(gate, i);
    ST(out, i, g * sigmoid(g) * LD(up, i));
}

kernel void swiglu_backward(long n, TENSOR(dOut), TENSOR(gate), TENSOR(up), TENSOR(dGate), TENSOR(dUp)) {
    const long i = get_global_id(0);
    if (i >= n) return;
    const real d = LD(dOut, i), g = LD(gate, i), u = LD(up, i);
    const real s = sigmoid(g);
    ST(dGate, i, d * u * s * (1 + g * (1 - s)));
    ST(dUp, i, d * (g * s));
}

/* Rotary embedding in place (rotate-half layout), one work-item per (token, head, pair). */
kernel void rope(int n, int heads, int half_, int inverse, TENSOR(x), TENSOR(cosT), TENSOR(sinT)) {
    const long gid = get_global_id(0);
    if (gid >= (long) n * heads * half_) return;
    const int i = gid % half_;
    const long th = gid / half_;
    const int h = th % heads;
    const long t = th / heads;
    const real c = LD(cosT, t * half_ + i);
    const real s = inverse ? -LD(sinT, t * half_ + i) : LD(sinT, t * half_ + i);
    const long o = (t * heads + h) * 2 * half_;
    const real x1 = LD(x, o + i), x2 = LD(x, o + half_ + i);
    ST(x, o + i, x1 * c - x2 * s);
    ST(x, o + half_ + i, x2 * c + x1 * s);
}

/* rope on a BF16 x, 8 pairs per work-item (half_ a multiple of 8, x's offset too: the host checks); the tables of any
 * type, read element by element. The same float expressions as rope. */
kernel void rope_bf16x8(int n, int heads, int half_, int inverse, TENSOR(x), TENSOR(cosT), TENSOR(sinT)) {
    const int h8 = half_ / 8;
    const long gid = get_global_id(0);
    if (gid >= (long) n * heads * h8) return;
    const int i = (int) (gid % h8) * 8;
    const long th = gid / h8, t = th / heads;
    const int h = (int) (th % heads);
    float c[8], s[8];
    for (int e = 0; e < 8; e++) {
        c[e] = (float) LD(cosT, t * half_ + i + e);
        s[e] = inverse ? (float) -LD(sinT, t * half_ + i + e) : (float) LD(sinT, t * half_ + i + e);
    }
    const float8 cv = vload8(0, c), sv = vload8(0, s);
    const long o = (t * heads + h) * 2 * half_;
    const float8 x1 = bf16x8_load(x, x_off + o + i), x2 = bf16x8_load(x, x_off + o + half_ + i);
    bf16x8_store(x, x_off + o + i, x1 * cv - x2 * sv);
    bf16x8_store(x, x_off + o + half_ + i, x2 * cv + x1 * sv);
}

/* out[i, :] = table[ids[i], :] (ids checked on the host) */
kernel void embedding_forward(long n, int dim, TENSOR(table), INTS(ids), TENSOR(out)) {
    const long gid = get_global_id(0);
    if (gid >= n) return;
    const long i = gid / dim;
    const int j = gid % dim;
    ST(out, gid, LD(table, (long) INT_AT(ids, i) * dim + j));
}

/*
 * dTable[id, :] += sum of dOut[i, :] over the positions i holding id, deterministically: the host groups the
 * positions by id (`order` lists them, ascending within a group; group g is order[start[g] .. start[g+1])), and
 * one work-item per (group, column) adds the rows in position order -- no atomics, no races.
 */
kernel void embedding_backward(long n, int dim, TENSOR(dOut), INTS(ids), INTS(order), INTS(start), TENSOR(dTable)) {
    const long gid = get_global_id(0);
    if (gid >= n) return;
    const long g = gid / dim;
    const int j = gid % dim;
    const int lo = INT_AT(start, g), hi = INT_AT(start, g + 1);
    const long at = (long) INT_AT(ids, INT_AT(order, lo)) * dim + j;
    real acc = LD(dTable, at);
    for (int p = lo; p < hi; p++) acc += LD(dOut, (long) INT_AT(order, p) * dim + j);
    ST(dTable, at, acc);
}

/* PyTorch's AdamW (single-tensor path), operation for operation; the step constants come from the host. */
kernel void adamw(long n, real decay, real oneMinusBeta1, real beta2, real oneMinusBeta2, real bc2Sqrt, real eps,
                  real stepSize, TENSOR(param), TENSOR(grad), TENSOR(m), TENSOR(v)) {
    const long i = get_global_id(0);
    if (i >= n) return;
    real p = LD(param, i) * decay;
    const real g = LD(grad, i);
    real mv = LD(m, i);
    mv += (g - mv) * oneMinusBeta1;
    const real vv = LD(v, i) * beta2 + oneMinusBeta2 * g * g;
    const real denom = sqrt(vv) / bc2Sqrt + eps;
    p -= stepSize * mv / denom;
    ST(param, i, p);
    ST(m, i, mv);
    ST(v, i, vv);
}

/* Cross-entropy backward, one work-item per logit: scale * (softmax - onehot), 0 on ignored rows; in place allowed. */
kernel void cross_entropy_backward(long n, int vocab, int ignoreIndex, real scale, TENSOR(logits), INTS(labels),
                                   TENSOR(lse), TENSOR(dLogits)) {
    const long gid = get_global_id(0);
    if (gid >= n) return;
    const long row = gid / vocab;
    const int c = gid % vocab;
    const int y = INT_AT(labels, row);
    real d = 0;
    if (y != ignoreIndex) {
        d = scale * exp(LD(logits, gid) - LD(lse, row));
        if (c == y) d -= scale;
    }
    ST(dLogits, gid, d);
}
