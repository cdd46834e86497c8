/*
 * Causal grouped-query attention, FlashAttention-2 style: tiled over keys with an online softmax, saving only
 * the row log-sum-exp; the backward pass recomputes the probabilities from it.
 *
 * Built once per head-dimension bucket ATT_D (16, 32, 64, 128, 256): a work-item keeps its rows of length ATT_D
 * in private memory, zero-padded beyond the real head dimension `hd` (padding adds exact zeros to every dot
 * product), so every inner loop has a compile-time trip count. Key/value (or query) tiles of `tile` rows, at
 * most ATT_TILE_MAX, are staged in local memory sized by the host.
 *
 * Layouts: q, out, dq [batch, seq, qHeads, hd]; k, v, dk, dv [batch, kvSeq, kvHeads, hd]; lse [batch, qHeads, seq];
 * segments I32 [batch, seq] (packed sequences, kvSeq == seq). Query head h reads key/value head h / (qHeads/kvHeads);
 * query i sits at position kvSeq - seq + i.
 */
#ifndef ATT_D
#error "ATT_D (the head-dimension bucket) must be defined"
#endif
#ifndef ATT_TILE_MAX
#define ATT_TILE_MAX 32
#endif

/* Loops over the head dimension: on GPUs (ATT_FULL_UNROLL) fully unrolled up to 64, so that rows stay in
 * registers; otherwise -- larger rows no longer fit in registers anyway, and CPU compilers (PoCL) take minutes
 * over fully unrolled work-group functions -- unrolled by 8. */
#if defined(ATT_FULL_UNROLL) && ATT_D <= 64
#define ATT_UNROLL _Pragma("unroll")
#else
#define ATT_UNROLL _Pragma("unroll 8")
#endif

inline void load_row(TENSOR(t), long at, int hd, real *dst) {
ATT_UNROLL
    for (int d = 0; d < ATT_D; d++) dst[d] = d < hd ? LD(t, at + d) : 0;
}

inline real dot_private_local(const real *a, local const real *b) {
    real s = 0;
ATT_UNROLL
    for (int d = 0; d < ATT_D; d++) s = MULADD(a[d], b[d], s);
    return s;
}

/* Stages rows r0 .. r0+tile-1 of head `head` of a [batch, len, heads, hd] tensor into local memory (zero rows past len). */
inline void stage_rows(TENSOR(t), int b, int len, int heads, int head, int hd, int r0, int tile, local real *dst) {
    const int lid = get_local_id(0), L = get_local_size(0);
    for (int e = lid; e < tile * ATT_D; e += L) {
        const int rr = e / ATT_D, d = e % ATT_D, r = r0 + rr;
        real v = 0;
        if (r < len && d < hd) v = LD(t, (((long) b * len + r) * heads + head) * hd + d);
        dst[e] = v;
    }
}

kernel void attention_forward(int seq, int kvSeq, int qHeads, int kvHeads, int hd, real scale, int tile,
                              TENSOR(q), TENSOR(k), TENSOR(v), INTS(seg), int hasSeg, TENSOR(out), TENSOR(lse),
                              local real *ks, local real *vs) {
    const int lid = get_local_id(0), R = get_local_size(0);
    const int bh = get_group_id(1), b = bh / qHeads, h = bh % qHeads, g = h / (qHeads / kvHeads);
    const int i = get_group_id(0) * R + lid;
    const bool valid = i < seq;
    const int offset = kvSeq - seq, pos = offset + i;

    real qi[ATT_D], o[ATT_D];
    if (valid) load_row(q, q_off, q_dt, (((long) b * seq + i) * qHeads + h) * hd, hd, qi);
ATT_UNROLL
    for (int d = 0; d < ATT_D; d++) o[d] = 0;
    const int mySeg = hasSeg && valid ? INT_AT(seg, (long) b * seq + i) : 0;
    real m = -INFINITY, l = 0;

    const int lastKey = offset + min(seq, (int) (get_group_id(0) + 1) * R) - 1; /* the group's last visible key */
    for (int j0 = 0; j0 <= lastKey; j0 += tile) {
        barrier(CLK_LOCAL_MEM_FENCE);
        stage_rows(k, k_off, k_dt, b, kvSeq, kvHeads, g, hd, j0, tile, ks);
        stage_rows(v, v_off, v_dt, b, kvSeq, kvHeads, g, hd, j0, tile, vs);
        barrier(CLK_LOCAL_MEM_FENCE);
        if (!valid) continue;
        real s[ATT_TILE_MAX];
        real tileMax = -INFINITY;
        for (int jj = 0; jj < tile; jj++) {
            const int j = j0 + jj;
            const bool visible = j <= pos && (!hasSeg || INT_AT(seg, (long) b * seq + j) == mySeg);
            s[jj] = visible ? dot_private_local(qi, ks + jj * ATT_D) * scale : -INFINITY;
            tileMax = fmax(tileMax, s[jj]);
        }
        if (tileMax == -INFINITY) continue;
        const real mNew = fmax(m, tileMax);
        const real corr = l == 0 ? 0 : exp(m - mNew);
        l *= corr;
ATT_UNROLL
        for (int d = 0; d < ATT_D; d++) o[d] *= corr;
        m = mNew;
        for (int jj = 0; jj < tile; jj++) {
            if (s[jj] == -INFINITY) continue;
            const real p = exp(s[jj] - m);
            l += p;
            local const real *vr = vs + jj * ATT_D;
ATT_UNROLL
            for (int d = 0; d < ATT_D; d++) o[d] = MULADD(p, vr[d], o[d]);
        }
    }
    if (!valid) return;
    const long at = (((long) b * seq + i) * qHeads + h) * hd;
    const real inv = 1 / l;
ATT_UNROLL
    for (int d = 0; d < ATT_D; d++)
        if (d < hd) ST(out, at + d, o[d] * inv);
    ST(lse, ((long) b * qHeads + h) * seq + i, m + log(l));
}

/* delta[b, h, i] = sum_d dOut * out (the D of FlashAttention-2's backward), one work-item per query row */
kernel void attention_backward_delta(long rows, int seq, int qHeads, int hd, TENSOR(dOut), TENSOR(out), global real *delta) {
    const long gid = get_global_id(0);
    if (gid >= rows) return;
    const int i = gid % seq;
    const long bh = gid / seq;
    const int h = bh % qHeads;
    const long b = bh / qHeads;
    const long at = ((b * seq + i) * qHeads + h) * hd;
    real s = 0;
    for (int d = 0; d < hd; d++) s = MULADD(LD(dOut, at + d), LD(out, at + d), s);
    delta[gid] = s;
}

/*
 * dK and dV: one work-item per key row j of one (batch, key/value head); it loops over the query heads of the
 * group and the query tiles from its own tile on (causality), so it owns its dk, dv rows and nothing races.
 */
kernel void attention_backward_dkdv(int seq, int qHeads, int kvHeads, int hd, real scale, int tile,
                                    TENSOR(dOut), TENSOR(q), TENSOR(k), TENSOR(v), INTS(seg), int hasSeg,
                                    TENSOR(lse), global const real *delta, TENSOR(dk), TENSOR(dv),
                                    local real *qs, local real *dos, local real *lses, local real *deltas, local int *segs) {
    const int lid = get_local_id(0), R = get_local_size(0);
    const int bg = get_group_id(1), b = bg / kvHeads, g = bg % kvHeads, group = qHeads / kvHeads;
    const int j = get_group_id(0) * R + lid;
    const bool valid = j < seq;
    const long at = (((long) b * seq + j) * kvHeads + g) * hd;

    real kj[ATT_D], vj[ATT_D], dkj[ATT_D], dvj[ATT_D];
    if (valid) {
        load_row(k, k_off, k_dt, at, hd, kj);
        load_row(v, v_off, v_dt, at, hd, vj);
    }
ATT_UNROLL
    for (int d = 0; d < ATT_D; d++) dkj[d] = dvj[d] = 0;
    const int mySeg = hasSeg && valid ? INT_AT(seg, (long) b * seq + j) : 0;
    const int firstQuery = get_group_id(0) * R;

    for (int h = g * group; h < (g + 1) * group; h++) {
        const long rowBase = ((long) b * qHeads + h) * seq;
        for (int i0 = firstQuery; i0 < seq; i0 += tile) {
            barrier(CLK_LOCAL_MEM_FENCE);
            stage_rows(q, q_off, q_dt, b, seq, qHeads, h, hd, i0, tile, qs);
            stage_rows(dOut, dOut_off, dOut_dt, b, seq, qHeads, h, hd, i0, tile, dos);
            for (int e = lid; e < tile; e += R) {
                const int i = i0 + e;
                lses[e] = i < seq ? LD(lse, rowBase + i) : 0;
                deltas[e] = i < seq ? delta[rowBase + i] : 0;
                segs[e] = hasSeg && i < seq ? INT_AT(seg, (long) b * seq + i) : 0;
            }
            barrier(CLK_LOCAL_MEM_FENCE);
            if (!valid) continue;
            for (int ii = 0; ii < tile; ii++) {
                const int i = i0 + ii;
                if (i < j || i >= seq || (hasSeg && segs[ii] != mySeg)) continue;
                local const real *qr = qs + ii * ATT_D, *dor = dos + ii * ATT_D;
                const real p = exp(dot_private_local(kj, qr) * scale - lses[ii]);
                const real dp = dot_private_local(vj, dor);
                const real ds = p * (dp - deltas[ii]) * scale;
ATT_UNROLL
                for (int d = 0; d < ATT_D; d++) {
                    dvj[d] = MULADD(p, dor[d], dvj[d]);
                    dkj[d] = MULADD(ds, qr[d], dkj[d]);
                }
            }
        }
    }
    if (!valid) return;
ATT_UNROLL
    for (int d = 0; d < ATT_D; d++) {
        if (d < hd) {
            ST(dk, at + d, dkj[d]);
            ST(dv, at + d, dvj[d]);
        }
    }
}

/* dQ: one work-item per query row, over the key tiles up to its group's last row. */
kernel void attention_backward_dq(int seq, int qHeads, int kvHeads, int hd, real scale, int tile,
                                  TENSOR(dOut), TENSOR(q), TENSOR(k), TENSOR(v), INTS(seg), int hasSeg,
                                  TENSOR(lse), global const real *delta, TENSOR(dq),
                                  local real *ks, local real *vs) {
    const int lid = get_local_id(0), R = get_local_size(0);
    const int bh = get_group_id(1), b = bh / qHeads, h = bh % qHeads, g = h / (qHeads / kvHeads);
    const int i = get_group_id(0) * R + lid;
    const bool valid = i < seq;
    const long at = (((long) b * seq + i) * qHeads + h) * hd;

    real qi[ATT_D], doi[ATT_D], dqi[ATT_D];
    real rowLse = 0, rowDelta = 0;
    if (valid) {
        load_row(q, q_off, q_dt, at, hd, qi);
        load_row(dOut, dOut_off, dOut_dt, at, hd, doi);
        rowLse = LD(lse, ((long) b * qHeads + h) * seq + i);
        rowDelta = delta[((long) b * qHeads + h) * seq + i];
    }
ATT_UNROLL
    for (int d = 0; d < ATT_D; d++) dqi[d] = 0;
    const int mySeg = hasSeg && valid ? INT_AT(seg, (long) b * seq + i) : 0;

    const int lastKey = min(seq, (int) (get_group_id(0) + 1) * R) - 1;
    for (int j0 = 0; j0 <= lastKey; j0 += tile) {
        barrier(CLK_LOCAL_MEM_FENCE);
        stage_rows(k, k_off, k_dt, b, seq, kvHeads, g, hd, j0, tile, ks);
        stage_rows(v, v_off, v_dt, b, seq, kvHeads, g, hd, j0, tile, vs);
        barrier(CLK_LOCAL_MEM_FENCE);
        if (!valid) continue;
        for (int jj = 0; jj < tile; jj++) {
            const int j = j0 + jj;
            if (j > i || (hasSeg && INT_AT(seg, (long) b * seq + j) != mySeg)) continue;
            local const real *kr = ks + jj * ATT_D, *vr = vs + jj * ATT_D;
            const real p = exp(dot_private_local(qi, kr) * scale - rowLse);
            const real ds = p * (dot_private_local(doi, vr) - rowDelta) * scale;
ATT_UNROLL
            for (int d = 0; d < ATT_D; d++) dqi[d] = MULADD(ds, kr[d], dqi[d]);
        }
    }
    if (!valid) return;
ATT_UNROLL
    for (int d = 0; d < ATT_D; d++)
        if (d < hd) ST(dq, at + d, dqi[d]);
}
