/* (Not compiled on its own: included twice by lap_cpu.c; named .c so that the package data
 * glob of the kernel sources ships it.)
 *
 * One fused call each way for a whole LAP layer: concept scorer (Eq. 3), window normalisation
 * (Eq. 4) and weighted window sum (Eq. 1). Included twice by lap_cpu.c, with T = float / double,
 * SUFFIX = f32 / f64 and EXP = expf / exp.
 *
 * Shapes (all contiguous, P = H * W pixels, K = kh * kw offsets, O = Ho * Wo windows):
 *   x (B, C, P); w1 (h1, C), b1 (h1); w2 (n, h), b2 (n) when hidden h > 0 (then h1 = h, else
 *   h1 = n and the first convolution is the last); agg (n + 1): the weights and the bias of
 *   the "conv" aggregation (aggregation 3: score = sigmoid(agg[n] + sum_k agg[k] concept_k));
 *   hid (B, h, P) pre-ReLU hidden activations (hidden > 0 only); concepts (B, n, P); score
 *   (B, P); wn (B, K, Ho, Wo) the normalised window weights (0 at padded positions); pooled
 *   (B, C, Ho, Wo).
 * The window sums take the phase planes (lap_phase_plan) on large maps and channel tiles
 * (lap_taps) on small ones; the global pool is the window that covers the whole map (kh = H,
 * kw = W, Ho = Wo = 1), with a dot product per channel plane instead.
 *
 * Work per sample: the scorer reads x once (1x1 convolutions over pixel blocks), the weights
 * are one-channel work, the pooling reads x once more while the sample is still in cache. The
 * backward reads x twice: step 1 takes grad wn = sum_c grad_out * x (and writes the pooling
 * term of grad_x on windowed maps), step 3, after the one-channel steps, adds w1^T grad_hidden
 * into grad_x and takes grad w1, one channel plane at a time (the plane is still in cache).
 * Threads: whole samples per thread when B >= threads, else a team splits each sample (pixel
 * blocks, channels), with the one-channel steps on one thread.
 */
#define LAP_CAT2(a, b) a##_##b
#define LAP_CAT(a, b) LAP_CAT2(a, b)
#define FN(name) LAP_CAT(name, SUFFIX)

/* one input plane (H, W) into its phase planes (lap_phase_plan); the positions outside x are
 * never written, so they keep the zeros of the buffer's first fill */
static void FN(to_phases)(const T *restrict xp, T *restrict X, const lap_geometry *g,
                          const lap_phase_plan *p) {
    const int64_t sh = g->sh, sw = g->sw, UV = p->U * p->V;
    for (int64_t r = 0; r < g->H; ++r) {
        const int64_t u = (r + g->ph) / sh;
        if (u >= p->U) break;
        const T *restrict src = xp + r * g->W;
        T *row = X + ((r + g->ph) % sh) * sw * UV + u * p->V;
        if (sw == 2) {
            /* both column phases in one loop over their common columns (short rows: the loop
             * overhead is most of the cost), then the at most one column either has alone */
            T *restrict d0 = row, *restrict d1 = row + UV;
            const int64_t at = -g->pw, lo0 = p->vlo[0], hi0 = p->vhi[0];
            const int64_t lo1 = p->vlo[1], hi1 = p->vhi[1];
            const int64_t lo = lo0 > lo1 ? lo0 : lo1, hi = hi0 < hi1 ? hi0 : hi1;
            for (int64_t v = lo; v < hi; ++v) {
                d0[v] = src[2 * v + at];
                d1[v] = src[2 * v + 1 + at];
            }
            /* (on tiny maps the two ranges may not overlap: then these cover each whole) */
            for (int64_t v = lo0; v < (lo < hi0 ? lo : hi0); ++v) d0[v] = src[2 * v + at];
            for (int64_t v = hi > lo0 ? hi : lo0; v < hi0; ++v) d0[v] = src[2 * v + at];
            for (int64_t v = lo1; v < (lo < hi1 ? lo : hi1); ++v) d1[v] = src[2 * v + 1 + at];
            for (int64_t v = hi > lo1 ? hi : lo1; v < hi1; ++v) d1[v] = src[2 * v + 1 + at];
            continue;
        }
        for (int64_t m = 0; m < sw; ++m) { /* stride 1, or 3 and more */
            T *restrict dst = row + m * UV;
            const int64_t lo = p->vlo[m], hi = p->vhi[m], at = m - g->pw;
            if (sw == 1)
                memcpy(dst + lo, src + lo + at, sizeof(T) * (hi - lo));
            else
                for (int64_t v = lo; v < hi; ++v) dst[v] = src[v * sw + at];
        }
    }
}

/* the gradient phases back into the plane's input gradient gxp (H, W), every element written
 * (pixels that no window reads get 0) */
static void FN(from_phases)(const T *restrict GX, T *restrict gxp, const lap_geometry *g,
                            const lap_phase_plan *p) {
    const int64_t sh = g->sh, sw = g->sw, UV = p->U * p->V;
    for (int64_t r = 0; r < g->H; ++r) {
        T *restrict dst = gxp + r * g->W;
        const int64_t u = (r + g->ph) / sh;
        if (u >= p->U || p->uncovered) memset(dst, 0, sizeof(T) * g->W);
        if (u >= p->U) continue;
        const T *row = GX + ((r + g->ph) % sh) * sw * UV + u * p->V;
        if (sw == 2) { /* both column phases in one loop, as in to_phases */
            const T *restrict s0 = row, *restrict s1 = row + UV;
            const int64_t at = -g->pw, lo0 = p->vlo[0], hi0 = p->vhi[0];
            const int64_t lo1 = p->vlo[1], hi1 = p->vhi[1];
            const int64_t lo = lo0 > lo1 ? lo0 : lo1, hi = hi0 < hi1 ? hi0 : hi1;
            for (int64_t v = lo; v < hi; ++v) {
                dst[2 * v + at] = s0[v];
                dst[2 * v + 1 + at] = s1[v];
            }
            for (int64_t v = lo0; v < (lo < hi0 ? lo : hi0); ++v) dst[2 * v + at] = s0[v];
            for (int64_t v = hi > lo0 ? hi : lo0; v < hi0; ++v) dst[2 * v + at] = s0[v];
            for (int64_t v = lo1; v < (lo < hi1 ? lo : hi1); ++v) dst[2 * v + 1 + at] = s1[v];
            for (int64_t v = hi > lo1 ? hi : lo1; v < hi1; ++v) dst[2 * v + 1 + at] = s1[v];
            continue;
        }
        for (int64_t m = 0; m < sw; ++m) {
            const T *restrict src = row + m * UV;
            const int64_t lo = p->vlo[m], hi = p->vhi[m], at = m - g->pw;
            if (sw == 1)
                memcpy(dst + lo + at, src + lo, sizeof(T) * (hi - lo));
            else if (sw == 2)
                for (int64_t v = lo; v < hi; ++v) dst[2 * v + at] = src[v];
            else
                for (int64_t v = lo; v < hi; ++v) dst[v * sw + at] = src[v];
        }
    }
}

/* (rows, cols) into rows of pitch V (the columns cols..V zero), and back */
static void FN(pitch)(const T *restrict src, T *restrict dst, int64_t rows, int64_t cols,
                      int64_t V) {
    for (int64_t i = 0; i < rows; ++i) {
        memcpy(dst + i * V, src + i * cols, sizeof(T) * cols);
        memset(dst + i * V + cols, 0, sizeof(T) * (V - cols));
    }
}

static void FN(unpitch)(const T *restrict src, T *restrict dst, int64_t rows, int64_t cols,
                        int64_t V) {
    for (int64_t i = 0; i < rows; ++i) memcpy(dst + i * cols, src + i * V, sizeof(T) * cols);
}

/* the window weights wb (K, Ho, Wo) of one sample with row pitch V (into buf), or wb itself
 * when V = Wo */
static const T *FN(pitched_weights)(const T *wb, T *buf, const lap_geometry *g,
                                    const lap_phase_plan *p) {
    if (p->V == g->Wo) return wb;
    for (int64_t k = 0; k < g->kh * g->kw; ++k)
        FN(pitch)(wb + k * g->Ho * g->Wo, buf + k * p->OP, g->Ho, g->Wo, p->V);
    return buf;
}

/* the windowed sum of one plane from its phases: op[o] = sum_k wn[k][o] X[off[k] + o], o < L,
 * op and wn with row pitch V (the columns Wo..V of op get what their zero weights give) */
static void FN(pool_phases)(const T *restrict X, const T *restrict wn, T *restrict op,
                            const lap_phase_plan *p, int64_t K) {
    const int64_t L = p->L;
    for (int64_t k = 0; k < K; ++k) {
        const T *restrict xs = X + p->off[k];
        const T *restrict wk = wn + k * p->OP;
        if (k == 0)
            for (int64_t o = 0; o < L; ++o) op[o] = wk[o] * xs[o];
        else
            for (int64_t o = 0; o < L; ++o) op[o] += wk[o] * xs[o];
    }
}

/* backward of pool_phases for one plane: GX[off[k] + o] += wn[k][o] gp[o] (GX may be NULL) and
 * gwn[k][o] += gp[o] X[off[k] + o] (gwn may be NULL); gp with row pitch V, 0 in Wo..V */
static void FN(unpool_phases)(const T *restrict X, const T *restrict wn, const T *restrict gp,
                              T *GX, T *gwn, const lap_phase_plan *p, int64_t K) {
    const int64_t L = p->L;
    for (int64_t k = 0; k < K; ++k) {
        const T *restrict xs = X + p->off[k];
        const T *restrict wk = wn + k * p->OP;
        if (GX) {
            T *restrict gxs = GX + p->off[k];
            for (int64_t o = 0; o < L; ++o) gxs[o] += wk[o] * gp[o];
        }
        if (gwn) {
            T *restrict gwk = gwn + k * p->OP;
            for (int64_t o = 0; o < L; ++o) gwk[o] += gp[o] * xs[o];
        }
    }
}

/* A vector type of BYTES bytes and its operations: load (unaligned), the sum of the lanes in
 * their order, and the transpose of a block of as many vectors as it has lanes, in place: log2
 * (lanes) rounds of perfect shuffles (zip row i with row i + lanes / 2; ZIP##_LO and ZIP##_HI:
 * the lane indices, macros of their own, so that their commas stay inside LAP_SHUFFLE). Two of
 * them: the pixel vectors and the tile vectors. */
#ifndef LAP_VECTOR_TYPE
#define LAP_VECTOR_TYPE(VEC, LANES, BYTES, LOAD, HSUM, TRANSPOSE, ZIP)                          \
    typedef T VEC __attribute__((vector_size(BYTES)));                                         \
    typedef LAP_LANE LANES __attribute__((vector_size(BYTES)));                                \
    static inline VEC LOAD(const T *p) {                                                       \
        VEC v;                                                                                  \
        memcpy(&v, p, sizeof v);                                                                \
        return v;                                                                               \
    }                                                                                           \
    static inline T HSUM(VEC v) {                                                              \
        T sum = 0;                                                                              \
        for (int64_t l = 0; l < (int64_t)(BYTES / sizeof(T)); ++l) sum += v[l];                 \
        return sum;                                                                             \
    }                                                                                           \
    static inline void TRANSPOSE(VEC *r) {                                                     \
        enum { n = BYTES / sizeof(T) };                                                         \
        for (int round = 0; (1 << round) < n; ++round) {                                        \
            VEC t[n];                                                                           \
            for (int i = 0; i < n / 2; ++i) {                                                   \
                t[2 * i] = LAP_SHUFFLE(r[i], r[i + n / 2], LANES, ZIP##_LO);                     \
                t[2 * i + 1] = LAP_SHUFFLE(r[i], r[i + n / 2], LANES, ZIP##_HI);                 \
            }                                                                                   \
            memcpy(r, t, sizeof t);                                                             \
        }                                                                                       \
    }
#endif

/* the pixel vectors: LAP_VBYTES (64 bytes where the compiler targets AVX-512, else 32) */
LAP_VECTOR_TYPE(FN(vec), FN(lanes), LAP_VBYTES, FN(load), FN(hsum), FN(transpose_block), LAP_ZIP)
#define LAP_V ((int64_t)(LAP_VBYTES / sizeof(T)))

/* The channel tiles' vectors (lap_taps): LAP_TV channels side by side, 32 bytes (AVX2 width)
 * whatever LAP_VBYTES is. At 64 bytes a tile and its gradient outgrow the L1 cache at the 12-28
 * px maps: the windowed backward took 1.09-1.18x the time at ResNet50 layer4.0 and Inception's
 * Mixed_7a (python benchmarks/kernel_ab.py --raw, 2026-12-03). */
LAP_VECTOR_TYPE(FN(tvec), FN(tlanes), 32, FN(tload), FN(thsum), FN(ttranspose), LAP_TZIP)
#define LAP_TV ((int64_t)(32 / sizeof(T)))

/* m <= LAP_TV planes (P apart, n elements each) into the tile xt: n rows of LAP_TV lanes, lane i
 * of row e = plane i's element e, lanes m..LAP_TV zero */
static void FN(tile_in)(const T *xp, int64_t P, int64_t m, int64_t n, T *restrict xt) {
    int64_t e0 = 0;
    for (; e0 + LAP_TV <= n; e0 += LAP_TV) {
        FN(tvec) r[LAP_TV];
        for (int i = 0; i < LAP_TV; ++i) r[i] = i < m ? FN(tload)(xp + i * P + e0) : (FN(tvec)){0};
        FN(ttranspose)(r);
        memcpy(xt + e0 * LAP_TV, r, sizeof r);
    }
    for (int64_t e = e0; e < n; ++e)
        for (int64_t i = 0; i < LAP_TV; ++i) xt[e * LAP_TV + i] = i < m ? xp[i * P + e] : (T)0;
}

/* the first n rows of the tile xt back into m planes (P apart) */
static void FN(tile_out)(const T *restrict xt, int64_t n, int64_t m, T *xp, int64_t P) {
    int64_t e0 = 0;
    for (; e0 + LAP_TV <= n; e0 += LAP_TV) {
        FN(tvec) r[LAP_TV];
        memcpy(r, xt + e0 * LAP_TV, sizeof r);
        FN(ttranspose)(r);
        for (int i = 0; i < m; ++i) memcpy(xp + i * P + e0, &r[i], sizeof r[i]);
    }
    for (int64_t e = e0; e < n; ++e)
        for (int64_t i = 0; i < m; ++i) xp[i * P + e] = xt[e * LAP_TV + i];
}

/* the windowed sums of a tile (lap_taps): ot[o] = sum_k wn[k][o] xt[tap[k][o]], rows of LAP_TV */
static void FN(pool_tile)(const T *restrict xt, const T *restrict wn, const int64_t *restrict tap,
                          T *restrict ot, int64_t K, int64_t O) {
    for (int64_t o = 0; o < O; ++o) {
        FN(tvec) acc = {0};
        for (int64_t k = 0; k < K; ++k)
            acc += wn[k * O + o] * FN(tload)(xt + tap[k * O + o] * LAP_TV);
        memcpy(ot + o * LAP_TV, &acc, sizeof acc);
    }
}

/* backward of pool_tile: gxt[tap[k][o]] += wn[k][o] gpt[o] (gxt may be NULL) and, per lane,
 * gwt[k][o] += gpt[o] xt[tap[k][o]] (gwt (K * O) rows of LAP_TV) */
static void FN(unpool_tile)(const T *restrict xt, const T *restrict wn,
                            const int64_t *restrict tap, const T *restrict gpt, T *gxt,
                            T *restrict gwt, int64_t K, int64_t O) {
    for (int64_t o = 0; o < O; ++o) {
        const FN(tvec) gv = FN(tload)(gpt + o * LAP_TV);
        for (int64_t k = 0; k < K; ++k) {
            const int64_t e = k * O + o, q = tap[e] * LAP_TV;
            if (gxt) {
                const FN(tvec) t = FN(tload)(gxt + q) + wn[e] * gv;
                memcpy(gxt + q, &t, sizeof t);
            }
            const FN(tvec) t = FN(tload)(gwt + e * LAP_TV) + gv * FN(tload)(xt + q);
            memcpy(gwt + e * LAP_TV, &t, sizeof t);
        }
    }
}

/* sum_i a[i] b[i] in vectors: the global pool's window sum of one channel plane (GCC
 * vectorises the plain loop's reduction badly at these lengths, 25-49 pixels) */
static T FN(dot)(const T *a, const T *b, int64_t n) {
    FN(vec) s = {0};
    int64_t i = 0;
    for (; i + LAP_V <= n; i += LAP_V) s += FN(load)(a + i) * FN(load)(b + i);
    T tail = 0;
    for (; i < n; ++i) tail += a[i] * b[i];
    return FN(hsum)(s) + tail;
}

/* out[i] = the sum of v[i]'s lanes, i < 8 (v is overwritten): with at most 8 lanes, transposes
 * of LAP_V x LAP_V blocks and vector adds, in the lanes' order (the same sums as hsum), in place
 * of 8 horizontal sums; with 16 lanes (AVX-512 floats) each vector's two halves added first,
 * then the same with the 8 x 8 block of halves */
static inline void FN(sum_lanes8)(FN(vec) *v, T *out) {
#if LAP_VBYTES / LAP_TBYTES > 8
    typedef T half __attribute__((vector_size(LAP_VBYTES / 2)));
    typedef LAP_LANE half_lanes __attribute__((vector_size(LAP_VBYTES / 2)));
    half r[8];
    for (int i = 0; i < 8; ++i) {
        half hi;
        memcpy(&r[i], &v[i], sizeof r[i]);
        memcpy(&hi, (const char *)&v[i] + sizeof hi, sizeof hi);
        r[i] += hi;
    }
    for (int round = 0; round < 3; ++round) { /* the 8 x 8 transpose, as transpose_block's */
        half t[8];
        for (int i = 0; i < 4; ++i) {
            t[2 * i] = LAP_SHUFFLE(r[i], r[i + 4], half_lanes, LAP_ZIP8_LO);
            t[2 * i + 1] = LAP_SHUFFLE(r[i], r[i + 4], half_lanes, LAP_ZIP8_HI);
        }
        memcpy(r, t, sizeof t);
    }
    half sum = r[0];
    for (int i = 1; i < 8; ++i) sum += r[i];
    memcpy(out, &sum, sizeof sum);
#else
    for (int blk = 0; blk < 8; blk += LAP_V) {
        FN(transpose_block)(v + blk);
        FN(vec) sum = v[blk];
        for (int i = 1; i < LAP_V; ++i) sum += v[blk + i];
        memcpy(out + blk, &sum, sizeof sum);
    }
#endif
}

/* the lanes of the last vector of a row of n >= LAP_V elements that starts at n - LAP_V and
 * overlaps the row's last full vector: all bits set for the n % LAP_V new lanes, zero for the
 * repeated ones */
static inline FN(lanes) FN(new_lanes)(int64_t n) {
    const int64_t rest = n % LAP_V;
    FN(lanes) keep;
    for (int64_t l = 0; l < LAP_V; ++l) keep[l] = l >= LAP_V - rest ? (LAP_LANE)-1 : 0;
    return keep;
}

/* The global pool's window sums, out[c] = sum_p wn[p] x[c * P + p] for c < m (channels P
 * apart): 8 channels at a time, each a vector sum along its row, the 8 sums reduced together
 * by a transpose (one horizontal sum per channel costs as much as its row's products at 25-49
 * pixels). Rows of at least LAP_V pixels end with a vector that overlaps the last full one,
 * its repeated lanes masked out of x. */
static void FN(row_dots)(const T *x, const T *wn, int64_t m, int64_t P, T *out) {
    const int64_t full = P / LAP_V * LAP_V;
    if (P < LAP_V) {
        for (int64_t c = 0; c < m; ++c) {
            T sum = 0;
            for (int64_t p = 0; p < P; ++p) sum += wn[p] * x[c * P + p];
            out[c] = sum;
        }
        return;
    }
    const FN(lanes) keep = FN(new_lanes)(P);
    const FN(vec) wlast = FN(load)(wn + P - LAP_V);
    int64_t c0 = 0;
    for (; c0 + 8 <= m; c0 += 8) {
        FN(vec) acc[8];
        for (int i = 0; i < 8; ++i) acc[i] = (FN(vec)){0};
        for (int64_t t = 0; t < full; t += LAP_V) {
            const FN(vec) wv = FN(load)(wn + t);
            for (int i = 0; i < 8; ++i) acc[i] += wv * FN(load)(x + (c0 + i) * P + t);
        }
        if (full < P)
            for (int i = 0; i < 8; ++i) {
                const FN(vec) xv = FN(load)(x + (c0 + i) * P + P - LAP_V);
                acc[i] += wlast * (FN(vec))((FN(lanes))xv & keep);
            }
        FN(sum_lanes8)(acc, out + c0);
    }
    for (int64_t c = c0; c < m; ++c) out[c] = FN(dot)(wn, x + c * P, P);
}

/* out[s[i]] = sum_c gv[c] x[c * P + s[i]] for the n (a constant where inlined) pixel vectors
 * s[i] of gemv_rows, summed in registers: two sets of accumulators, even and odd channels */
static inline __attribute__((always_inline)) void FN(gemv_block)(const T *x, const T *gv,
                                                                 int64_t m, int64_t P,
                                                                 const int64_t *s, int n,
                                                                 T *out) {
    FN(vec) a0[8], a1[8];
    for (int i = 0; i < n; ++i) a0[i] = a1[i] = (FN(vec)){0};
    int64_t c = 0;
    for (; c + 2 <= m; c += 2) {
        const T g0 = gv[c], g1 = gv[c + 1];
        const T *x0 = x + c * P, *x1 = x0 + P;
        for (int i = 0; i < n; ++i) {
            a0[i] += g0 * FN(load)(x0 + s[i]);
            a1[i] += g1 * FN(load)(x1 + s[i]);
        }
    }
    if (c < m)
        for (int i = 0; i < n; ++i) a0[i] += gv[c] * FN(load)(x + c * P + s[i]);
    for (int i = 0; i < n; ++i) {
        const FN(vec) sum = a0[i] + a1[i];
        memcpy(out + s[i], &sum, sizeof sum);
    }
}

/* The global pool's gradient of its weights, out[p] = sum_c gv[c] x[c * P + p] for c < m
 * (channels P apart), written (not added): blocks of up to 8 pixel vectors held in registers
 * across all the channels, where a loop per channel would carry each pixel's sum through memory
 * from one channel to the next. The block's last vector overlaps when P is not a multiple of
 * LAP_V; its repeated lanes get the same sums again. */
static void FN(gemv_rows)(const T *x, const T *gv, int64_t m, int64_t P, T *out) {
    if (P < LAP_V) {
        for (int64_t p = 0; p < P; ++p) out[p] = 0;
        for (int64_t c = 0; c < m; ++c)
            for (int64_t p = 0; p < P; ++p) out[p] += gv[c] * x[c * P + p];
        return;
    }
    for (int64_t p0 = 0; p0 < P; p0 += 8 * LAP_V) {
        const int64_t left = P - p0, n = left >= 8 * LAP_V ? 8 : (left + LAP_V - 1) / LAP_V;
        int64_t s[8];
        for (int64_t i = 0; i < n; ++i)
            s[i] = p0 + i * LAP_V < P - LAP_V ? p0 + i * LAP_V : P - LAP_V;
        switch (n) { /* a constant count of vectors for each block size */
        case 1: FN(gemv_block)(x, gv, m, P, s, 1, out); break;
        case 2: FN(gemv_block)(x, gv, m, P, s, 2, out); break;
        case 3: FN(gemv_block)(x, gv, m, P, s, 3, out); break;
        case 4: FN(gemv_block)(x, gv, m, P, s, 4, out); break;
        case 5: FN(gemv_block)(x, gv, m, P, s, 5, out); break;
        case 6: FN(gemv_block)(x, gv, m, P, s, 6, out); break;
        case 7: FN(gemv_block)(x, gv, m, P, s, 7, out); break;
        default: FN(gemv_block)(x, gv, m, P, s, 8, out); break;
        }
    }
}

/* The first 1x1 convolution's weights as conv_block reads them: element (j, c) at
 * w[j * row + c * col] for the full groups of 8 rows, and rows h1 / 8 * 8.. of the last partial
 * group from last (8 rows of C, zero past h1). Either w^T (C, JP), rows h1..JP zero (row 1,
 * col JP, last unused: 8 weights of a channel side by side, the fastest), or w1 (h1, C) as the
 * layer holds it (row C, col 1), which needs no copy: lap_layer_forward takes the copy when it
 * costs at most an eighth of the input. */
typedef struct {
    const T *w, *last;
    int64_t row, col;
} FN(weights);

/* w^T (C, JP) of w (h1, C), rows h1..JP zero */
static T *FN(transpose_padded)(const T *w, int64_t h1, int64_t C, int64_t JP) {
    T *wt = (T *)lap_calloc(C * JP + 1, sizeof(T));
    if (!wt) return 0;
    for (int64_t j = 0; j < h1; ++j)
        for (int64_t c = 0; c < C; ++c) wt[c * JP + j] = w[j * C + c];
    return wt;
}

/* the rows of the last, partial group of 8 outputs of w (h1, C) as an (8, C) block whose rows
 * h1 % 8..8 are zero */
static T *FN(pad_last_group)(const T *w, int64_t h1, int64_t C) {
    T *wl = (T *)lap_calloc(8 * C + 1, sizeof(T));
    if (!wl) return 0;
    memcpy(wl, w + h1 / 8 * 8 * C, sizeof(T) * (h1 % 8) * C);
    return wl;
}

/* the last pixels of a block that conv_block gives to conv_tail: at most this many (one vector
 * FMA per pixel and channel there, against 8 for the pixel vector overlapping the last full
 * one, whatever the number of new pixels in it) */
#define LAP_TAIL_PIXELS 2

/* out[jj * LAP_BLOCK] = bias[jj] + sum_c wt[c * JP + jj] x[c * P] for jj < 8: one pixel's 8
 * outputs of a group from the transposed weights (wt: the group's first column), a vector of 8
 * per channel, in four chains. Not inlined: inlined, it slowed the batch-1 calls that never take
 * it (code layout). */
static __attribute__((noinline)) void FN(conv_tail)(const T *x, int64_t P, int64_t C,
                                                    const T *wt, int64_t JP, const T *bias,
                                                    T *out) {
    typedef T eight __attribute__((vector_size(8 * sizeof(T))));
    eight a[4] = {{0}, {0}, {0}, {0}};
    int64_t c = 0;
    for (; c + 4 <= C; c += 4)
        for (int u = 0; u < 4; ++u) {
            eight w;
            memcpy(&w, wt + (c + u) * JP, sizeof w);
            a[u] += w * x[(c + u) * P];
        }
    for (; c < C; ++c) {
        eight w;
        memcpy(&w, wt + c * JP, sizeof w);
        a[0] += w * x[c * P];
    }
    const eight sum = (a[0] + a[1]) + (a[2] + a[3]);
    for (int jj = 0; jj < 8; ++jj) out[jj * LAP_BLOCK] = bias[jj] + sum[jj];
}

/* acc[j, t] = b1[j] + sum_c w1[j, c] xr[c, t] for t < len (rows j < JP, acc rows LAP_BLOCK): 8
 * outputs of a pixel vector per input channel, each weight a broadcast */
static void FN(conv_block)(const T *xr, int64_t P, int64_t C, const FN(weights) *wg, int64_t JP,
                           const T *b1, int64_t h1, T *acc, int64_t len) {
    const int64_t col = wg->col;
    for (int64_t jg = 0; jg < JP; jg += 8) {
        T bias[8];
        const T *rows[8];
        for (int64_t jj = 0; jj < 8; ++jj) {
            bias[jj] = jg + jj < h1 ? b1[jg + jj] : (T)0;
            rows[jj] = jg + 8 <= h1 || !wg->last ? wg->w + (jg + jj) * wg->row
                                                 : wg->last + jj * C;
        }
        const int64_t step = jg + 8 <= h1 || !wg->last ? col : 1;
        /* whole vectors; a block of at least LAP_V pixels ends with a vector that overlaps the
         * last full one (it writes the same sums again), so that no pixel takes the scalar loop
         * (up to 15 pixels of 8 dependent FMA chains each with AVX-512 floats). With the
         * transposed weights, up to LAP_TAIL_PIXELS last pixels take conv_tail instead: at the
         * 7 x 7 global pools (49 = 3 x 16 + 1) the overlapping vector was a quarter of the
         * scorer's FMAs; the forward call takes 0.89-0.90x the time there at batch 32, the same
         * elsewhere (python benchmarks/kernel_ab.py --raw --against aca423f --where avgpool,
         * 2026-12-04, 2 threads) */
        const int64_t rest = len % LAP_V;
        const int tail = len > LAP_V && rest <= LAP_TAIL_PIXELS && wg->row == 1 && step == JP;
        const int64_t vend = tail ? len - rest : len >= LAP_V ? len : 0;
        for (int64_t t0 = 0; t0 < vend; t0 += LAP_V) {
            if (t0 + LAP_V > len) t0 = len - LAP_V;
            FN(vec) a[8];
            for (int64_t jj = 0; jj < 8; ++jj) a[jj] = (FN(vec)){0} + bias[jj];
            const T *xc = xr + t0;
            for (int64_t c = 0; c < C; ++c, xc += P) {
                const FN(vec) xv = FN(load)(xc);
                for (int64_t jj = 0; jj < 8; ++jj) a[jj] += rows[jj][c * step] * xv;
            }
            for (int64_t jj = 0; jj < 8; ++jj)
                memcpy(acc + (jg + jj) * LAP_BLOCK + t0, &a[jj], sizeof a[jj]);
        }
        int64_t t = vend;
        for (; tail && t < len; ++t)
            FN(conv_tail)(xr + t, P, C, wg->w + jg, JP, bias, acc + jg * LAP_BLOCK + t);
#if LAP_VBYTES / LAP_TBYTES > 8
        /* a block of 8-15 pixels (a thread's share of a small map): its first 8 in half vectors */
        typedef T half __attribute__((vector_size(LAP_VBYTES / 2)));
        if (len - t >= LAP_V / 2) {
            half a[8];
            for (int64_t jj = 0; jj < 8; ++jj) a[jj] = (half){0} + bias[jj];
            const T *xc = xr + t;
            for (int64_t c = 0; c < C; ++c, xc += P) {
                half xv;
                memcpy(&xv, xc, sizeof xv);
                for (int64_t jj = 0; jj < 8; ++jj) a[jj] += rows[jj][c * step] * xv;
            }
            for (int64_t jj = 0; jj < 8; ++jj)
                memcpy(acc + (jg + jj) * LAP_BLOCK + t, &a[jj], sizeof a[jj]);
            t += LAP_V / 2;
        }
#endif
        for (; t < len; ++t) { /* the last pixels of a block below LAP_V pixels */
            T a[8];
            for (int64_t jj = 0; jj < 8; ++jj) a[jj] = bias[jj];
            for (int64_t c = 0; c < C; ++c) {
                const T xv = xr[c * P + t];
                for (int64_t jj = 0; jj < 8; ++jj) a[jj] += rows[jj][c * step] * xv;
            }
            for (int64_t jj = 0; jj < 8; ++jj) acc[(jg + jj) * LAP_BLOCK + t] = a[jj];
        }
    }
}

/* one channel plane of the input gradient of a windowed layer: gxp = start + sum_j w1[j, c]
 * ghid[j] (start: 0, or gxp's content (the pooling term) when add is set), and
 * gw1[j, c] += sum_p ghid[j, p] x[p]; ghid has JP rows (rows >= h1 zero), wc = w1 + c (rows C
 * apart: w1 as the layer holds it, no transposed copy) */
static void FN(input_grad_plane)(const T *xp, T *gxp, const T *ghid, int64_t P, const T *wc,
                                 int64_t JP, int64_t h1, T *gw1, int64_t C, int want_gw1,
                                 int add) {
    for (int64_t jg = 0; jg < JP; jg += 8) {
        const int first = jg == 0;
        T wk[8];
        for (int64_t jj = 0; jj < 8; ++jj) wk[jj] = jg + jj < h1 ? wc[(jg + jj) * C] : (T)0;
        FN(vec) d[8];
        T dt[8];
        for (int64_t jj = 0; jj < 8; ++jj) {
            d[jj] = (FN(vec)){0};
            dt[jj] = 0;
        }
        int64_t t0 = 0;
        for (; t0 + LAP_V <= P; t0 += LAP_V) {
            const FN(vec) xv = FN(load)(xp + t0);
            FN(vec) gv = {0};
            if (gxp && (!first || add)) gv = FN(load)(gxp + t0);
            for (int64_t jj = 0; jj < 8; ++jj) {
                const FN(vec) hv = FN(load)(ghid + (jg + jj) * P + t0);
                gv += wk[jj] * hv;
                d[jj] += hv * xv;
            }
            if (gxp) memcpy(gxp + t0, &gv, sizeof gv);
        }
        for (int64_t t = t0; t < P; ++t) {
            const T xv = xp[t];
            T gv = 0;
            if (gxp && (!first || add)) gv = gxp[t];
            for (int64_t jj = 0; jj < 8; ++jj) {
                const T hv = ghid[(jg + jj) * P + t];
                gv += wk[jj] * hv;
                dt[jj] += hv * xv;
            }
            if (gxp) gxp[t] = gv;
        }
        if (want_gw1) {
            T ds[8];
            FN(sum_lanes8)(d, ds);
            for (int64_t jj = 0; jj < 8 && jg + jj < h1; ++jj)
                gw1[(jg + jj) * C] += ds[jj] + dt[jj];
        }
    }
}

/* one channel plane of the global pool's input gradient (weight_grad_block has its w1
 * gradient): gxp = pool_scale * pool_w (the pooling term; pool 0: none) + sum_j w1[j, c]
 * ghid[j]; ghid has JP rows (rows >= h1 zero), wc = w1 + c (rows C apart: w1 as the layer
 * holds it). A plane of at least LAP_V pixels ends with a vector that overlaps the last full
 * one: computed first (before a later group's store changes the gxp it reads) and stored last,
 * with the same values in the repeated lanes, so that no pixel takes the scalar loop and its
 * chain of 8 dependent FMAs. */
static void FN(grad_x_plane)(T *gxp, const T *ghid, int64_t P, const T *wc, int64_t JP,
                             int64_t h1, int64_t C, int pool, T pool_scale, const T *pool_w) {
    const int64_t full = P / LAP_V * LAP_V;
    for (int64_t jg = 0; jg < JP; jg += 8) {
        const int first = jg == 0;
        const T *gh = ghid + jg * P;
        T wk[8];
        for (int64_t jj = 0; jj < 8; ++jj) wk[jj] = jg + jj < h1 ? wc[(jg + jj) * C] : (T)0;
        /* gxp at pixels t..t + LAP_V before this group: the pooling term or the earlier sums */
#define LAP_GX_START(t)                                                                          \
    (!first ? FN(load)(gxp + (t)) : pool ? pool_scale * FN(load)(pool_w + (t)) : (FN(vec)){0})
        FN(vec) last = {0};
        if (full && full < P) {
            last = LAP_GX_START(P - LAP_V);
            for (int64_t jj = 0; jj < 8; ++jj) last += wk[jj] * FN(load)(gh + jj * P + P - LAP_V);
        }
        for (int64_t t0 = 0; t0 < full; t0 += LAP_V) {
            FN(vec) gv = LAP_GX_START(t0);
            for (int64_t jj = 0; jj < 8; ++jj) gv += wk[jj] * FN(load)(gh + jj * P + t0);
            memcpy(gxp + t0, &gv, sizeof gv);
        }
#undef LAP_GX_START
        if (full && full < P) memcpy(gxp + P - LAP_V, &last, sizeof last);
        for (int64_t t = full ? P : 0; t < P; ++t) { /* planes below LAP_V pixels */
            T gv = !first ? gxp[t] : pool ? pool_scale * pool_w[t] : (T)0;
            for (int64_t jj = 0; jj < 8; ++jj) gv += wk[jj] * gh[jj * P + t];
            gxp[t] = gv;
        }
    }
}

/* grad_x_plane for m channel planes (gx: the first plane, planes P apart; gpool: their pooling
 * gradients, NULL for none) when the scorer has one group of 8 hidden units (JP == 8) and the
 * plane at least LAP_V pixels. w: the first channel's h1 first-convolution weights, element (j,
 * i) of channel i at w[j * row + i * col]: w1's column (row C, col 1) or w1 transposed (row 1,
 * col 8, h1 == 8; see lap_layer_backward). Each pixel vector (the last one overlapping the one
 * before, recomputing the same values) loads the 8 hidden gradients once for all m channels,
 * and 8 channels at a time are 8 independent chains of 8 FMAs, each weight a broadcast from
 * memory. (One chain alone waits on its FMAs' latency: 8 x 4 cycles per vector. Weights first
 * gathered into an array, 32 per 4 channels, were spilled to the stack as vectors and took 46%
 * of the global pools' backward.) */
static inline __attribute__((always_inline)) void FN(grad_x_global8_at)(
    T *gx, const T *ghid, int64_t P, const T *wc, int64_t row, int64_t col, int64_t h1,
    int64_t m, const T *gpool, const T *pool_w) {
    for (int64_t t0 = 0; t0 < P; t0 += LAP_V) {
        const int64_t t = t0 + LAP_V <= P ? t0 : P - LAP_V;
        FN(vec) h[8];
        for (int jj = 0; jj < 8; ++jj) h[jj] = FN(load)(ghid + jj * P + t);
        const FN(vec) wv = gpool ? FN(load)(pool_w + t) : (FN(vec)){0};
        for (int64_t c0 = 0; c0 < m; c0 += 8) {
            const T *w = wc + c0 * col;
            T *out = gx + c0 * P + t;
            FN(vec) acc[8];
            if (m - c0 >= 8 && h1 == 8) {
                for (int i = 0; i < 8; ++i) acc[i] = (gpool ? gpool[c0 + i] : (T)0) * wv;
                for (int jj = 0; jj < 8; ++jj)
                    for (int i = 0; i < 8; ++i) acc[i] += w[jj * row + i * col] * h[jj];
                for (int i = 0; i < 8; ++i) memcpy(out + i * P, &acc[i], sizeof acc[i]);
            } else {
                const int64_t n = m - c0 < 8 ? m - c0 : 8;
                for (int64_t i = 0; i < n; ++i) {
                    acc[0] = (gpool ? gpool[c0 + i] : (T)0) * wv;
                    for (int64_t jj = 0; jj < h1; ++jj) acc[0] += w[jj * row + i * col] * h[jj];
                    memcpy(out + i * P, &acc[0], sizeof acc[0]);
                }
            }
        }
    }
}

/* grad_x_global8_at from w1 transposed (wt: (C, 8), the m channels' rows) where the call has
 * one, else from w1's columns (wc, rows C apart): the transposed weights are one 32-byte row per
 * channel. Against grad_x_planes8 of 1555bbf, 4 channels per call with their weights gathered
 * (python benchmarks/kernel_ab.py --raw --where avgpool --against 1555bbf, 2026-12-05): the
 * global pools' backward call 0.80-0.87x at batch 32 (0.93-0.96x at the 7x7 pools with the
 * weights from w1's columns), 0.88-1.02x at batch 1 */
static void FN(grad_x_global8)(T *gx, const T *ghid, int64_t P, const T *wt, const T *wc,
                               int64_t h1, int64_t C, int64_t m, const T *gpool,
                               const T *pool_w) {
    if (wt)
        FN(grad_x_global8_at)(gx, ghid, P, wt, 1, 8, h1, m, gpool, pool_w);
    else
        FN(grad_x_global8_at)(gx, ghid, P, wc, C, 1, h1, m, gpool, pool_w);
}

/* gw1[j, c] += sum_p ghid[j, p] x[c, p] for m <= LAP_TV channels (planes P apart; gw1 rows C
 * apart, j < h1) from ghidT (P, JP), ghid transposed: each pixel's JP hidden gradients side by
 * side. LAP_TV hidden units of a channel are one vector, so a pixel is one FMA per channel with
 * its x broadcast, and the LAP_TV x LAP_TV block of sums is transposed once into rows of gw1: no
 * horizontal sum per channel and hidden unit (input_grad_plane's), which at the global pools'
 * 25-49 pixels are a large share of the work. Tile vectors (LAP_TV lanes): JP is a multiple of 8,
 * and 16-lane vectors would waste half their lanes (weight_grad_pairs fills them with two
 * pixels where LAP_PAIRS holds). */
static void FN(weight_grad_block)(const T *x, const T *ghidT, int64_t P, int64_t JP, int64_t h1,
                                  int64_t m, T *gw1, int64_t C) {
    for (int64_t jc = 0; jc < h1; jc += LAP_TV) {
        FN(tvec) acc[LAP_TV];
        for (int i = 0; i < LAP_TV; ++i) acc[i] = (FN(tvec)){0};
        if (m == LAP_TV) {
            for (int64_t p = 0; p < P; ++p) {
                const FN(tvec) g = FN(tload)(ghidT + p * JP + jc);
                for (int i = 0; i < LAP_TV; ++i) acc[i] += g * x[i * P + p];
            }
        } else {
            for (int64_t p = 0; p < P; ++p) {
                const FN(tvec) g = FN(tload)(ghidT + p * JP + jc);
                for (int64_t i = 0; i < m; ++i) acc[i] += g * x[i * P + p];
            }
        }
        FN(ttranspose)(acc); /* acc[jj] lane i: hidden unit jc + jj, channel i */
        for (int64_t jj = 0; jj < LAP_TV && jc + jj < h1; ++jj) {
            T *row = gw1 + (jc + jj) * C;
            if (m == LAP_TV) {
                const FN(tvec) sum = FN(tload)(row) + acc[jj];
                memcpy(row, &sum, sizeof sum);
            } else {
                for (int64_t i = 0; i < m; ++i) row[i] += acc[jj][i];
            }
        }
    }
}

/* Whether the global pool's weight gradient takes pixel pairs (weight_grad_pairs): float
 * pixel vectors of 16 lanes (LAP_V == 2 LAP_TV) and one group of 8 hidden units. */
#if LAP_TBYTES == 4 && LAP_VBYTES == 64 && defined(__has_builtin)
#if __has_builtin(__builtin_shufflevector) /* GCC 12, clang */
#define LAP_PAIRS_BUILT 1
#endif
#endif
#ifndef LAP_PAIRS_BUILT
#define LAP_PAIRS_BUILT 0
#endif
#define LAP_PAIRS(JP) (LAP_PAIRS_BUILT && LAP_V == 2 * LAP_TV && (JP) == 8)

/* weight_grad_block with full-width vectors, for LAP_PAIRS: a vector holds the 8 hidden
 * gradients of two neighbouring pixels, interleaved (ghidI: (P + 1) / 2 rows of 16, lane 2j + q
 * = ghid[j, 2r + q], zero past pixel P - 1), times the pair's two x values of a channel
 * repeated (one 8-byte broadcast), so a pixel pair is one FMA per channel where
 * weight_grad_block's 8-lane tile vectors take two. A lone last pixel (P odd) gets its x
 * broadcast alone (its partner lanes of ghidI are zero): nothing is read past a plane. The
 * sums stay in pair lanes, added to gw1x (m rows of 16, one per channel) across samples, and
 * pair_sums_out turns them into gw1 once per call: at 25-49 pixels a reduction per sample and
 * tile costs as much as the tile's products. Used where each thread takes samples enough that
 * its gw1x is at most a quarter of them (lap_layer_backward's pair_lanes): a reduction per
 * sample and tile instead took 1.1x weight_grad_block's time at (1, 2048, 5, 5). (python
 * benchmarks/kernel_ab.py --raw --against be9816c, two runs: the global pools' backward call
 * 0.78-0.96x at batch 32, batch 1 unchanged; 2026-12-04) */
#if LAP_PAIRS_BUILT
static void FN(weight_grad_pairs)(const T *x, const T *ghidI, int64_t P, int64_t m, T *gw1x) {
    typedef uint64_t pair_vec __attribute__((vector_size(LAP_VBYTES)));
    FN(vec) acc[LAP_TV];
    for (int i = 0; i < LAP_TV; ++i) acc[i] = i < m ? FN(load)(gw1x + i * LAP_V) : (FN(vec)){0};
    const int64_t pairs = P / 2;
#define LAP_PAIR_FMA(i)                                                                          \
    do {                                                                                         \
        uint64_t two;                                                                            \
        memcpy(&two, x + (i) * P + 2 * r, sizeof two);                                           \
        const pair_vec xv = (pair_vec){0} + two;                                                 \
        acc[i] += g * (FN(vec))xv;                                                               \
    } while (0)
    if (m == LAP_TV) {
        for (int64_t r = 0; r < pairs; ++r) {
            const FN(vec) g = FN(load)(ghidI + r * LAP_V);
            for (int i = 0; i < LAP_TV; ++i) LAP_PAIR_FMA(i);
        }
    } else {
        for (int64_t r = 0; r < pairs; ++r) {
            const FN(vec) g = FN(load)(ghidI + r * LAP_V);
            for (int64_t i = 0; i < m; ++i) LAP_PAIR_FMA(i);
        }
    }
#undef LAP_PAIR_FMA
    if (P % 2) {
        const FN(vec) g = FN(load)(ghidI + pairs * LAP_V);
        for (int64_t i = 0; i < m; ++i) acc[i] += g * x[i * P + P - 1];
    }
    for (int64_t i = 0; i < m; ++i) memcpy(gw1x + i * LAP_V, &acc[i], sizeof acc[i]);
}

/* gw1[j, c] += the two pair lanes of hidden unit j in gw1x's row c, for m <= LAP_TV channels
 * (gw1 rows C apart, j < h1): the pairs added, then the LAP_TV x LAP_TV block transposed into
 * rows of gw1 as weight_grad_block's */
static void FN(pair_sums_out)(const T *gw1x, int64_t h1, int64_t m, T *gw1, int64_t C) {
    FN(tvec) a[LAP_TV]; /* a[i] lane j: hidden unit j, channel i */
    for (int i = 0; i < LAP_TV; i += 2) {
        const FN(vec) u = i < m ? FN(load)(gw1x + i * LAP_V) : (FN(vec)){0};
        const FN(vec) v = i + 1 < m ? FN(load)(gw1x + (i + 1) * LAP_V) : (FN(vec)){0};
        const FN(vec) sum = LAP_SHUFFLE(u, v, FN(lanes), LAP_EVEN16) +
                            LAP_SHUFFLE(u, v, FN(lanes), LAP_ODD16);
        /* the halves by shuffles: a copy through memory would read half of a wide store */
        a[i] = __builtin_shufflevector(sum, sum, 0, 1, 2, 3, 4, 5, 6, 7);
        a[i + 1] = __builtin_shufflevector(sum, sum, 8, 9, 10, 11, 12, 13, 14, 15);
    }
    FN(ttranspose)(a); /* a[jj] lane i: hidden unit jj, channel i */
    for (int64_t jj = 0; jj < h1; ++jj) {
        T *row = gw1 + jj * C;
        if (m == LAP_TV) {
            const FN(tvec) sum = FN(tload)(row) + a[jj];
            memcpy(row, &sum, sizeof sum);
        } else {
            for (int64_t i = 0; i < m; ++i) row[i] += a[jj][i];
        }
    }
}
#endif

/* the 1x1 convolutions, sigmoid and aggregation for pixels [p0, p1) of one sample */
static void FN(score_pixels)(const T *xb, const FN(weights) *wg, const T *b1, const T *w2,
                             const T *b2,
                             const T *agg, T *hid, T *conc, T *score, int64_t C, int64_t P,
                             const lap_layer_spec *s, int64_t p0, int64_t p1, T *scratch) {
    const int64_t h = s->hidden, n = s->concepts, h1 = h > 0 ? h : n, JP = lap_padded(h1);
    T *acc = scratch, *z = scratch + JP * LAP_BLOCK;
    for (int64_t start = p0; start < p1; start += LAP_BLOCK) {
        const int64_t len = p1 - start < LAP_BLOCK ? p1 - start : LAP_BLOCK;
        FN(conv_block)(xb + start, P, C, wg, JP, b1, h1, acc, len);
        const T *zz = acc;
        if (h > 0) {
            for (int64_t j = 0; j < h; ++j)
                memcpy(hid + j * P + start, acc + j * LAP_BLOCK, sizeof(T) * len);
            for (int64_t k = 0; k < n; ++k) {
                T *restrict zk = z + k * LAP_BLOCK;
                for (int64_t t = 0; t < len; ++t) zk[t] = b2[k];
                for (int64_t j = 0; j < h; ++j) {
                    const T wv = w2[k * h + j];
                    const T *restrict a = acc + j * LAP_BLOCK;
                    for (int64_t t = 0; t < len; ++t) zk[t] += wv * (!(a[t] <= 0) ? a[t] : (T)0); /* NaN stays NaN, as torch.relu */
                }
            }
            zz = z;
        }
        for (int64_t k = 0; k < n; ++k) {
            T *restrict ck = conc + k * P + start;
            const T *restrict zk = zz + k * LAP_BLOCK;
            for (int64_t t = 0; t < len; ++t) ck[t] = (T)1 / ((T)1 + EXP(-zk[t]));
        }
        T *restrict sc = score + start;
        if (n == 1 || s->aggregation == 0) {
            memcpy(sc, conc + start, sizeof(T) * len);
            for (int64_t k = 1; k < n; ++k) {
                const T *restrict ck = conc + k * P + start;
                for (int64_t t = 0; t < len; ++t) sc[t] = ck[t] > sc[t] ? ck[t] : sc[t];
            }
        } else if (s->aggregation == 3) { /* "conv": a 1x1 convolution over the concepts */
            for (int64_t t = 0; t < len; ++t) sc[t] = agg[n];
            for (int64_t k = 0; k < n; ++k) {
                const T *restrict ck = conc + k * P + start;
                const T wk = agg[k];
                for (int64_t t = 0; t < len; ++t) sc[t] += wk * ck[t];
            }
            for (int64_t t = 0; t < len; ++t) sc[t] = (T)1 / ((T)1 + EXP(-sc[t]));
        } else {
            memcpy(sc, conc + start, sizeof(T) * len);
            for (int64_t k = 1; k < n; ++k) {
                const T *restrict ck = conc + k * P + start;
                for (int64_t t = 0; t < len; ++t) sc[t] += ck[t];
            }
            if (s->aggregation == 2)
                for (int64_t t = 0; t < len; ++t) sc[t] /= (T)n;
        }
    }
}

/* Eq. 4 and the normalisation of Eq. 1 for every window of one sample */
static void FN(window_weights)(const T *sc, T *wn, const lap_geometry *g, T alpha, T eps) {
    /* exp(-(alpha d)^2), never exp(-alpha^2 d^2): alpha^2 overflows float for |alpha| > 1.8e19,
     * and inf * 0 at the window's maximum (d = 0) made the weight NaN */
    const int64_t O = g->Ho * g->Wo;
    for (int64_t i = 0; i < g->Ho; ++i)
        for (int64_t j = 0; j < g->Wo; ++j) {
            const int64_t o = i * g->Wo + j;
            T m = -INFINITY, total = 0;
            for (int64_t a = 0; a < g->kh; ++a) {
                const int64_t r = i * g->sh - g->ph + a;
                if (r < 0 || r >= g->H) continue;
                for (int64_t q = 0; q < g->kw; ++q) {
                    const int64_t col = j * g->sw - g->pw + q;
                    if (col >= 0 && col < g->W && sc[r * g->W + col] > m) m = sc[r * g->W + col];
                }
            }
            for (int64_t a = 0; a < g->kh; ++a) {
                const int64_t r = i * g->sh - g->ph + a;
                for (int64_t q = 0; q < g->kw; ++q) {
                    const int64_t col = j * g->sw - g->pw + q, k = a * g->kw + q;
                    if (r < 0 || r >= g->H || col < 0 || col >= g->W) {
                        wn[k * O + o] = 0;
                        continue;
                    }
                    const T v = sc[r * g->W + col], ad = alpha * (m - v);
                    const T w = EXP(-(ad * ad)) * v + eps;
                    wn[k * O + o] = w;
                    total += w;
                }
            }
            for (int64_t k = 0; k < g->kh * g->kw; ++k) wn[k * O + o] /= total;
        }
}

/* backward of window_weights: adds d loss / d score into gs, returns d loss / d alpha */
static double FN(window_weights_backward)(const T *sc, const T *wn, const T *gwn, T *gs,
                                          const lap_geometry *g, T alpha, T eps) {
    const int64_t O = g->Ho * g->Wo;
    double galpha = 0;
    for (int64_t i = 0; i < g->Ho; ++i)
        for (int64_t j = 0; j < g->Wo; ++j) {
            const int64_t o = i * g->Wo + j;
            T m = -INFINITY, total = 0, dot = 0, gm = 0;
            int64_t ties = 0;
            for (int64_t a = 0; a < g->kh; ++a) {
                const int64_t r = i * g->sh - g->ph + a;
                if (r < 0 || r >= g->H) continue;
                for (int64_t q = 0; q < g->kw; ++q) {
                    const int64_t col = j * g->sw - g->pw + q, k = a * g->kw + q;
                    if (col < 0 || col >= g->W) continue;
                    const T v = sc[r * g->W + col];
                    if (v > m) {
                        m = v;
                        ties = 1;
                    } else if (v == m) {
                        ++ties;
                    }
                    dot += gwn[k * O + o] * wn[k * O + o];
                }
            }
            for (int64_t a = 0; a < g->kh; ++a) {
                const int64_t r = i * g->sh - g->ph + a;
                if (r < 0 || r >= g->H) continue;
                for (int64_t q = 0; q < g->kw; ++q) {
                    const int64_t col = j * g->sw - g->pw + q;
                    if (col < 0 || col >= g->W) continue;
                    const T v = sc[r * g->W + col], ad = alpha * (m - v);
                    total += EXP(-(ad * ad)) * v + eps;
                }
            }
            for (int64_t a = 0; a < g->kh; ++a) {
                const int64_t r = i * g->sh - g->ph + a;
                if (r < 0 || r >= g->H) continue;
                for (int64_t q = 0; q < g->kw; ++q) {
                    const int64_t col = j * g->sw - g->pw + q, k = a * g->kw + q;
                    if (col < 0 || col >= g->W) continue;
                    const T v = sc[r * g->W + col], d = m - v, ad = alpha * d;
                    const T gauss = EXP(-(ad * ad));
                    const T gw = (gwn[k * O + o] - dot) / total;
                    /* 2 alpha^2 d gauss; 0 where gauss vanished (not inf * 0 for a huge alpha d) */
                    const T slope = gauss > 0 ? 2 * alpha * ad * gauss : 0;
                    gs[r * g->W + col] += gw * (gauss + slope * v);
                    gm -= gw * slope * v;
                    if (gauss > 0) galpha -= (double)(gw * 2 * ad * d * v * gauss);
                }
            }
            if (gm != 0) {
                const T share = gm / (T)ties;
                for (int64_t a = 0; a < g->kh; ++a) {
                    const int64_t r = i * g->sh - g->ph + a;
                    if (r < 0 || r >= g->H) continue;
                    for (int64_t q = 0; q < g->kw; ++q) {
                        const int64_t col = j * g->sw - g->pw + q;
                        if (col >= 0 && col < g->W && sc[r * g->W + col] == m)
                            gs[r * g->W + col] += share;
                    }
                }
            }
        }
    return galpha;
}

/* backward of score_pixels for one sample: gs (P) and the concepts' own gradient gcext (n, P,
 * may be NULL) to ghid (h1, P), the gradient of the first convolution's output; accumulates
 * gw2 (n, h), gb2 (n), gb1 (h1) and, for the "conv" aggregation, gagg (n + 1) (sc: the
 * sample's score; gs is overwritten there). gc is (n, P) scratch. */
static void FN(score_backward)(const T *hid, const T *conc, const T *sc, const T *gcext, T *gs,
                               const T *w2, const T *agg, T *ghid, T *gc, T *gw2, T *gb2,
                               T *gb1, T *gagg, int64_t P, const lap_layer_spec *s) {
    const int64_t h = s->hidden, n = s->concepts, h1 = h > 0 ? h : n;
    T *gz = h > 0 ? gc : ghid;
    for (int64_t k = 0; k < n; ++k) {
        T *restrict gk = gz + k * P;
        if (gcext)
            memcpy(gk, gcext + k * P, sizeof(T) * P);
        else
            memset(gk, 0, sizeof(T) * P);
    }
    if (n == 1) {
        for (int64_t p = 0; p < P; ++p) gz[p] += gs[p];
    } else if (s->aggregation == 0) {
        for (int64_t p = 0; p < P; ++p) {
            T m = conc[p];
            int64_t ties = 1;
            for (int64_t k = 1; k < n; ++k) {
                const T v = conc[k * P + p];
                if (v > m) {
                    m = v;
                    ties = 1;
                } else if (v == m) {
                    ++ties;
                }
            }
            const T share = gs[p] / (T)ties;
            for (int64_t k = 0; k < n; ++k)
                if (conc[k * P + p] == m) gz[k * P + p] += share;
        }
    } else if (s->aggregation == 3) { /* through the sigmoid, then to each concept */
        T total = 0;
        for (int64_t p = 0; p < P; ++p) {
            gs[p] *= sc[p] * (1 - sc[p]);
            total += gs[p];
        }
        gagg[n] += total;
        for (int64_t k = 0; k < n; ++k) {
            T *restrict gk = gz + k * P;
            const T *restrict ck = conc + k * P;
            const T wk = agg[k];
            T acc = 0;
            for (int64_t p = 0; p < P; ++p) {
                gk[p] += wk * gs[p];
                acc += gs[p] * ck[p];
            }
            gagg[k] += acc;
        }
    } else {
        const int mean = s->aggregation == 2;
        for (int64_t k = 0; k < n; ++k)
            for (int64_t p = 0; p < P; ++p) gz[k * P + p] += mean ? gs[p] / (T)n : gs[p];
    }
    for (int64_t k = 0; k < n; ++k) {
        T *restrict gk = gz + k * P;
        const T *restrict ck = conc + k * P;
        for (int64_t p = 0; p < P; ++p) gk[p] = gk[p] * (1 - ck[p]) * ck[p];
    }
    if (h > 0) {
        for (int64_t k = 0; k < n; ++k) {
            const T *restrict gk = gz + k * P;
            T sum = 0;
            LAP_SIMD_SUM(sum)
            for (int64_t p = 0; p < P; ++p) sum += gk[p];
            gb2[k] += sum;
            for (int64_t j = 0; j < h; ++j) {
                const T *restrict hj = hid + j * P;
                T acc = 0;
                LAP_SIMD_SUM(acc)
                for (int64_t p = 0; p < P; ++p) acc += gk[p] * (!(hj[p] <= 0) ? hj[p] : (T)0);
                gw2[k * h + j] += acc;
            }
        }
        for (int64_t j = 0; j < h; ++j) {
            T *restrict gj = ghid + j * P;
            const T *restrict hj = hid + j * P;
            memset(gj, 0, sizeof(T) * P);
            for (int64_t k = 0; k < n; ++k) {
                const T wv = w2[k * h + j];
                const T *restrict gk = gz + k * P;
                for (int64_t p = 0; p < P; ++p) gj[p] += wv * gk[p];
            }
            for (int64_t p = 0; p < P; ++p) gj[p] = hj[p] > 0 ? gj[p] : (T)0;
        }
    }
    for (int64_t j = 0; j < h1; ++j) {
        T sum = 0;
        LAP_SIMD_SUM(sum)
        for (int64_t p = 0; p < P; ++p) sum += ghid[j * P + p];
        gb1[j] += sum;
    }
}

/* per-thread buffers of the windowed pooling. Phase planes: the phase planes X of one input
 * plane (zeros outside x: the caller's block is calloc'ed), the gradient's phases GX
 * (backward), one sample's pitched window weights, one pitched output (or upstream gradient)
 * plane, and one pitched weight gradient (backward with pitched_grad). Channel tiles (tap not
 * NULL): the input tile X and gradient tile GX ((P + 1) rows of LAP_TV, row P zero in X), the
 * output (or upstream gradient) tile plane (O rows) and the per-lane weight gradient gwn
 * (K * O rows, backward). All NULL for the global pool. */
typedef struct {
    T *X, *GX, *wn, *plane, *gwn;
    const int64_t *tap;
} FN(pool_buffers);

/* elements of one thread's pool_buffers (0 for the global pool, p NULL) */
static int64_t FN(pool_buffers_len)(const lap_geometry *g, const lap_phase_plan *p,
                                    int backward, int pitched_grad, int tiles) {
    if (!p) return 0;
    const int64_t K = g->kh * g->kw, KOP = K * p->OP;
    if (tiles) {
        const int64_t rows = g->H * g->W + 1, O = g->Ho * g->Wo;
        return LAP_TV * (rows * (backward ? 2 : 1) + O + (backward ? K * O : 0));
    }
    return p->size * (backward ? 2 : 1) + KOP + p->OP + (pitched_grad ? KOP : 0);
}

static void FN(pool_buffers_bind)(FN(pool_buffers) *pb, T *base, const lap_geometry *g,
                                  const lap_phase_plan *p, int backward, int pitched_grad,
                                  const int64_t *tap) {
    pb->X = pb->GX = pb->wn = pb->plane = pb->gwn = 0;
    pb->tap = tap;
    if (!p) return;
    const int64_t KOP = g->kh * g->kw * p->OP;
    if (tap) {
        const int64_t rows = g->H * g->W + 1, O = g->Ho * g->Wo;
        pb->X = base;
        pb->GX = backward ? base + rows * LAP_TV : 0;
        pb->plane = base + rows * LAP_TV * (backward ? 2 : 1);
        pb->gwn = backward ? pb->plane + O * LAP_TV : 0;
        return;
    }
    pb->X = base;
    pb->GX = backward ? base + p->size : 0;
    pb->wn = base + p->size * (backward ? 2 : 1);
    pb->plane = pb->wn + KOP;
    pb->gwn = pitched_grad ? pb->plane + p->OP : 0;
}

/* the windowed sums of channels [lo, hi) of one sample (xb (C, P) -> pb (C, O)) in channel
 * tiles; wn (K, O) unpitched */
static void FN(pool_tiles)(const T *xb, const T *wn, T *pooled, const lap_geometry *g,
                           int64_t lo, int64_t hi, FN(pool_buffers) *pb) {
    const int64_t P = g->H * g->W, O = g->Ho * g->Wo, K = g->kh * g->kw;
    for (int64_t c = lo; c < hi; c += LAP_TV) {
        const int64_t m = hi - c < LAP_TV ? hi - c : LAP_TV;
        FN(tile_in)(xb + c * P, P, m, P, pb->X);
        FN(pool_tile)(pb->X, wn, pb->tap, pb->plane, K, O);
        FN(tile_out)(pb->plane, O, m, pooled + c * O, O);
    }
}

/* backward of pool_tiles: writes channels [lo, hi) of the sample's input gradient gxb (C, P)
 * when not NULL (every element; pixels in no window get 0) and sets gwn (K rows of pitch
 * p->OP, row pitch p->V, zeroed by the caller) to sum_c grad_out * x over those channels */
static void FN(unpool_tiles)(const T *xb, const T *wn, const T *gpb, T *gxb, T *gwn,
                             const lap_geometry *g, const lap_phase_plan *p, int64_t lo,
                             int64_t hi, FN(pool_buffers) *pb) {
    const int64_t P = g->H * g->W, O = g->Ho * g->Wo, K = g->kh * g->kw;
    memset(pb->gwn, 0, sizeof(T) * K * O * LAP_TV);
    for (int64_t c = lo; c < hi; c += LAP_TV) {
        const int64_t m = hi - c < LAP_TV ? hi - c : LAP_TV;
        FN(tile_in)(xb + c * P, P, m, P, pb->X);
        FN(tile_in)(gpb + c * O, O, m, O, pb->plane);
        if (gxb) memset(pb->GX, 0, sizeof(T) * (P + 1) * LAP_TV);
        FN(unpool_tile)(pb->X, wn, pb->tap, pb->plane, gxb ? pb->GX : 0, pb->gwn, K, O);
        if (gxb) FN(tile_out)(pb->GX, P, m, gxb + c * P, P);
    }
    for (int64_t e = 0; e < K * O; ++e) {
        const int64_t k = e / O, o = e % O;
        const T sum = FN(thsum)(FN(tload)(pb->gwn + e * LAP_TV));
        gwn[k * p->OP + (o / g->Wo) * p->V + o % g->Wo] = sum;
    }
}

/* the windowed sum of one plane xp into op (Ho, Wo), wn: pitched weights (pitched_weights) */
static void FN(pool_plane)(const T *xp, const T *wn, T *op, const lap_geometry *g,
                           const lap_phase_plan *p, FN(pool_buffers) *pb) {
    const int direct = p->V == g->Wo;
    FN(to_phases)(xp, pb->X, g, p);
    FN(pool_phases)(pb->X, wn, direct ? op : pb->plane, p, g->kh * g->kw);
    if (!direct) FN(unpitch)(pb->plane, op, g->Ho, g->Wo, p->V);
}

/* backward of pool_plane: writes gxp (H, W) when not NULL, adds sum grad_out * x into the
 * pitched gwn (K, Ho, V) when not NULL; gp (Ho, Wo) */
static void FN(unpool_plane)(const T *xp, const T *wn, const T *gp, T *gxp, T *gwn,
                             const lap_geometry *g, const lap_phase_plan *p,
                             FN(pool_buffers) *pb) {
    if (gwn) FN(to_phases)(xp, pb->X, g, p);
    const T *gpp = gp;
    if (p->V != g->Wo) {
        FN(pitch)(gp, pb->plane, g->Ho, g->Wo, p->V);
        gpp = pb->plane;
    }
    if (gxp) memset(pb->GX, 0, sizeof(T) * p->size);
    FN(unpool_phases)(pb->X, wn, gpp, gxp ? pb->GX : 0, gwn, p, g->kh * g->kw);
    if (gxp) FN(from_phases)(pb->GX, gxp, g, p);
}

static void FN(layer_forward_sample)(const T *x, const FN(weights) *wg, const T *b1,
                                     const T *w2,
                                     const T *b2, const T *agg, T *hid, T *conc, T *score, T *wn, T *pooled,
                                     const lap_geometry *g, const lap_layer_spec *s, T alpha,
                                     T eps, const lap_phase_plan *pp, int64_t b, int tid, int nth,
                                     T *scratch, FN(pool_buffers) *pb) {
    const int64_t C = g->C, P = g->H * g->W, O = g->Ho * g->Wo, K = g->kh * g->kw;
    const int64_t h = s->hidden, n = s->concepts;
    const T *xb = x + b * C * P;
    T *sb = score + b * P, *wnb = wn + b * K * O;
    int64_t lo, hi;
    /* the scorer's pixels in shares of whole vectors, so that a map of at most LAP_BLOCK pixels
     * (the 5-14 px maps at batch 1) is split between the threads too: in shares of blocks,
     * thread 0 alone scored it. The forward call takes 0.67-0.86x the time at 5-14 px and
     * 0.85-0.95x at 25-28 px at batch 1, 2 threads, two runs (python benchmarks/kernel_ab.py
     * --raw --against e472045 --batches 1) */
    lap_part((P + LAP_V - 1) / LAP_V, tid, nth, &lo, &hi);
    lo *= LAP_V;
    hi = hi * LAP_V < P ? hi * LAP_V : P;
    if (lo < hi)
        FN(score_pixels)(xb, wg, b1, w2, b2, agg, h > 0 ? hid + b * h * P : 0, conc + b * n * P, sb,
                         C, P, s, lo, hi, scratch);
    LAP_BARRIER(nth);
    if (tid == 0) FN(window_weights)(sb, wnb, g, alpha, eps);
    LAP_BARRIER(nth);
    lap_part(C, tid, nth, &lo, &hi);
    if (pb->tap) { /* small maps */
        FN(pool_tiles)(xb, wnb, pooled + b * C * O, g, lo, hi, pb);
        return;
    }
    if (s->global) {
        FN(row_dots)(xb + lo * P, wnb, hi - lo, P, pooled + b * C + lo);
        return;
    }
    const T *wnp = FN(pitched_weights)(wnb, pb->wn, g, pp);
    for (int64_t c = lo; c < hi; ++c)
        FN(pool_plane)(xb + c * P, wnp, pooled + (b * C + c) * O, g, pp, pb);
}

/* Returns 0, or 1 when a work buffer could not be allocated (then nothing was computed). agg
 * (NULL unless the "conv" aggregation) comes last so that benchmarks/kernel_ab.py can call the
 * libraries of earlier revisions (ABI 3-5), which ignore a trailing argument. */
int FN(lap_layer_forward)(const T *x, const T *w1, const T *b1, const T *w2, const T *b2,
                          T *hid, T *conc, T *score, T *wn, T *pooled, const lap_geometry *g,
                          const lap_layer_spec *s, double alpha, double eps, int nthreads,
                          const T *agg) {
    const int64_t n = s->concepts, h1 = s->hidden > 0 ? s->hidden : n, JP = lap_padded(h1);
    lap_phase_plan plan = {0};
    lap_begin_call();
    if (!s->global && !lap_plan_phases(g, &plan)) return 1;
    const lap_phase_plan *pp = s->global ? 0 : &plan;
    const int whole_samples = g->B >= nthreads, tiles = lap_use_tiles(g, s, nthreads);
    /* every thread's buffers in one block, allocated before any work */
    const int64_t scratch_len = (JP + n) * LAP_BLOCK;
    const int64_t per_thread = scratch_len + FN(pool_buffers_len)(g, pp, 0, 0, tiles);
    T *block = (T *)lap_calloc(nthreads * per_thread + 1, sizeof(T));
    int64_t *tap = block && tiles ? lap_taps(g) : 0;
    /* the transposed weights when they cost at most an eighth of the input (the faster
     * layout), else w1 itself and a padded copy of its last partial group of 8 rows */
    const int transpose = 8 * JP <= g->B * g->H * g->W;
    T *copy = !block ? 0
              : transpose ? FN(transpose_padded)(w1, h1, g->C, JP)
              : h1 % 8    ? FN(pad_last_group)(w1, h1, g->C)
                          : 0;
    const FN(weights) wg = transpose ? (FN(weights)){copy, 0, 1, JP}
                                     : (FN(weights)){w1, copy, g->C, 1};
    if (!block || (tiles && !tap) || ((transpose || h1 % 8) && !copy)) {
        free(copy);
        free(tap);
        free(block);
        lap_free_phases(&plan);
        return 1;
    }
    _Pragma("omp parallel num_threads(nthreads)") {
        T *scratch = block + lap_thread() * per_thread;
        FN(pool_buffers) pb;
        FN(pool_buffers_bind)(&pb, scratch + scratch_len, g, pp, 0, 0, tap);
        if (whole_samples) {
            _Pragma("omp for schedule(static)")
            for (int64_t b = 0; b < g->B; ++b)
                FN(layer_forward_sample)(x, &wg, b1, w2, b2, agg, hid, conc, score, wn,
                                         pooled, g, s, (T)alpha, (T)eps, pp, b, 0, 1, scratch,
                                         &pb);
        } else {
            const int tid = lap_thread(), nth = lap_threads();
            for (int64_t b = 0; b < g->B; ++b) {
                FN(layer_forward_sample)(x, &wg, b1, w2, b2, agg, hid, conc, score, wn,
                                         pooled, g, s, (T)alpha, (T)eps, pp, b, tid, nth, scratch,
                                         &pb);
                LAP_BARRIER(nth);
            }
        }
    }
    lap_free_phases(&plan);
    free(tap);
    free(copy);
    free(block);
    return 0;
}

/* per-thread scratch and parameter-gradient partials of the backward */
typedef struct {
    T *gwn_own;               /* (K * OP) this thread's share of d loss / d wn, row pitch V */
    T *gwn, *gs, *gc, *ghid;  /* the team's: (K * O), (P), (n * P), (JP * P) */
    T *ghidT; /* the team's ghid transposed, (P * JP), or in pixel pairs (weight_grad_pairs) */
    T *gw1x;  /* this thread's gw1 in pair lanes (weight_grad_pairs), (C * LAP_V) */
    FN(pool_buffers) pb;      /* the windowed pooling's buffers */
    T *gw1, *gb1, *gw2, *gb2, *gagg; /* this thread's partial parameter gradients */
    const T *wt; /* w1 transposed, (C, 8), for the global pool's grad_x_global8, or NULL */
    double galpha;
} FN(lap_scratch);

static void FN(layer_backward_sample)(const T *x, const T *w1, const T *w2, const T *agg,
                                      const T *hid, const T *conc, const T *score, const T *wn, const T *gpool,
                                      const T *gconc, const T *gscore, T *gx, int want_gw1,
                                      const lap_geometry *g, const lap_layer_spec *s, T alpha,
                                      T eps, const lap_phase_plan *pp, int64_t b, int tid,
                                      int nth, FN(lap_scratch) *mine, T *all_gwn) {
    const int64_t C = g->C, P = g->H * g->W, O = g->Ho * g->Wo, K = g->kh * g->kw;
    const int64_t h = s->hidden, n = s->concepts, h1 = h > 0 ? h : n, JP = lap_padded(h1);
    const int64_t OP = pp ? pp->OP : O, V = pp ? pp->V : g->Wo;
    const T *xb = x + b * C * P, *wnb = wn + b * K * O, *sb = score + b * P;
    const T *gpb = gpool ? gpool + b * C * O : 0;
    /* the weight gradient the one-channel step reads: the thread's own when it is unpitched
     * and the thread alone, else the team's (summed over threads and unpitched below) */
    const int own = nth == 1 && V == g->Wo;
    T *gwn_sum = own ? mine->gwn_own : mine->gwn;
    int64_t lo, hi;
    /* 1: d loss / d wn = sum_c grad_pooled * x (each thread over its channels, then summed) */
    if (gpb) {
        memset(mine->gwn_own, 0, sizeof(T) * K * OP);
        lap_part(C, tid, nth, &lo, &hi);
        const int tiles = mine->pb.tap != 0;
        const T *wnp = s->global || tiles ? wnb : FN(pitched_weights)(wnb, mine->pb.wn, g, pp);
        if (tiles) /* small maps (and the pooling term of grad_x) */
            FN(unpool_tiles)(xb, wnb, gpb, gx ? gx + b * C * P : 0, mine->gwn_own, g, pp, lo, hi,
                             &mine->pb);
        if (s->global) FN(gemv_rows)(xb + lo * P, gpb + lo, hi - lo, P, mine->gwn_own);
        /* the phase planes; the pooling term of grad_x too (step 3 adds the scorer's term) */
        for (int64_t c = lo; c < hi && !tiles && !s->global; ++c)
            FN(unpool_plane)(xb + c * P, wnp, gpb + c * O, gx ? gx + (b * C + c) * P : 0,
                             mine->gwn_own, g, pp, &mine->pb);
        if (!own) {
            LAP_BARRIER(nth);
            lap_part(K * O, tid, nth, &lo, &hi);
            for (int64_t e = lo; e < hi; ++e) {
                const int64_t k = e / O, o = e % O;
                const int64_t at = k * OP + (o / g->Wo) * V + o % g->Wo;
                const T *parts = nth == 1 ? mine->gwn_own : all_gwn;
                T sum = 0;
                for (int t = 0; t < nth; ++t) sum += parts[t * K * OP + at];
                gwn_sum[e] = sum;
            }
        }
    }
    LAP_BARRIER(nth);
    /* 2: the one-channel steps: Eq. 4 and the scorer's head back to its first convolution */
    if (tid == 0) {
        if (gscore)
            memcpy(mine->gs, gscore + b * P, sizeof(T) * P);
        else
            memset(mine->gs, 0, sizeof(T) * P);
        if (gpb)
            mine->galpha +=
                FN(window_weights_backward)(sb, wnb, gwn_sum, mine->gs, g, alpha, eps);
        FN(score_backward)(h > 0 ? hid + b * h * P : 0, conc + b * n * P, sb,
                           gconc ? gconc + b * n * P : 0, mine->gs, w2, agg, mine->ghid,
                           mine->gc, mine->gw2, mine->gb2, mine->gb1, mine->gagg, P, s);
        if (s->global && want_gw1 && mine->gw1x) /* for weight_grad_pairs */
            for (int64_t p = 0; p < P; ++p)
                for (int64_t j = 0; j < JP; ++j)
                    mine->ghidT[p / 2 * LAP_V + 2 * j + p % 2] = mine->ghid[j * P + p];
        else if (s->global && want_gw1) /* for weight_grad_block */
            for (int64_t p = 0; p < P; ++p)
                for (int64_t j = 0; j < JP; ++j) mine->ghidT[p * JP + j] = mine->ghid[j * P + p];
    }
    LAP_BARRIER(nth);
    /* 3: grad_x = pooling term + w1^T ghid and grad w1 = ghid x^T. Windows: one channel plane
     * at a time, both in one pass over x (input_grad_plane). The global pool: grad_x for LAP_TV
     * planes at a time (grad_x_global8, or grad_x_plane a plane at a time), grad w1 for the same
     * channels right after (weight_grad_pairs or weight_grad_block): at its 25-49 pixels the per-plane sums of input_grad_plane cost more
     * than their products (python benchmarks/kernel_ab.py). The pooling term of grad_x: in gx
     * since step 1 (windows), or gpool[c] * wn */
    lap_part(C, tid, nth, &lo, &hi);
    if (s->global) {
        for (int64_t c0 = lo; c0 < hi; c0 += LAP_TV) {
            const int64_t m = hi - c0 < LAP_TV ? hi - c0 : LAP_TV;
            if (gx && JP == 8 && P >= LAP_V)
                FN(grad_x_global8)(gx + (b * C + c0) * P, mine->ghid, P,
                                   mine->wt ? mine->wt + c0 * 8 : 0, w1 + c0, h1, C, m,
                                   gpb ? gpb + c0 : 0, wnb);
            else
                for (int64_t c = c0; gx && c < c0 + m; ++c)
                    FN(grad_x_plane)(gx + (b * C + c) * P, mine->ghid, P, w1 + c, JP, h1, C,
                                     gpb != 0, gpb ? gpb[c] : (T)0, wnb);
#if LAP_PAIRS_BUILT
            if (want_gw1 && mine->gw1x)
                FN(weight_grad_pairs)(xb + c0 * P, mine->ghidT, P, m, mine->gw1x + c0 * LAP_V);
            else
#endif
            if (want_gw1)
                FN(weight_grad_block)(xb + c0 * P, mine->ghidT, P, JP, h1, m, mine->gw1 + c0, C);
        }
    } else {
        for (int64_t c = lo; c < hi; ++c) {
            T *gxp = gx ? gx + (b * C + c) * P : 0;
            if (gxp || want_gw1)
                FN(input_grad_plane)(xb + c * P, gxp, mine->ghid, P, w1 + c, JP, h1,
                                     mine->gw1 + c, C, want_gw1, gpb != 0);
        }
    }
    LAP_BARRIER(nth);
}

/* Gradients of a LAP layer. gpool (B, C, Ho, Wo), gconc (B, n, P), gscore (B, P) may each be
 * NULL (no gradient flows into that output); gx (B, C, P) may be NULL (not wanted). gparams is
 * overwritten with the parameter gradients, one after the other: gw1 (h1, C) (zeros unless
 * want_gw1), gb1 (h1), gw2 (n, h) and gb2 (n) (when hidden > 0), gagg (n + 1) (the "conv"
 * aggregation), galpha (1). */
/* Returns 0, or 1 when a work buffer could not be allocated (then nothing was computed); agg
 * last, as in lap_layer_forward. */
int FN(lap_layer_backward)(const T *x, const T *w1, const T *w2, const T *hid, const T *conc,
                           const T *score, const T *wn, const T *gpool, const T *gconc,
                           const T *gscore, T *gx, T *gparams, const lap_geometry *g,
                           const lap_layer_spec *s, double alpha, double eps, int want_gw1,
                           int nthreads, const T *agg) {
    const int64_t C = g->C, P = g->H * g->W, O = g->Ho * g->Wo, K = g->kh * g->kw;
    const int64_t h = s->hidden, n = s->concepts, h1 = h > 0 ? h : n;
    lap_phase_plan plan = {0};
    lap_begin_call();
    if (!s->global && !lap_plan_phases(g, &plan)) return 1;
    const lap_phase_plan *pp = s->global ? 0 : &plan;
    const int64_t OP = pp ? pp->OP : O;
    const int whole_samples = g->B >= nthreads, tiles = lap_use_tiles(g, s, nthreads);
    const int64_t conv_agg = s->aggregation == 3 && n > 1 ? n + 1 : 0;
    const int64_t params = h1 * C + h1 + (h > 0 ? n * h + n : 0) + conv_agg;
    /* team buffers: one set per thread when threads take whole samples, else one shared set */
    /* ghid, and for the global pool ghid transposed too (weight_grad_block) or in pixel pairs
     * (weight_grad_pairs), one row more when P is odd */
    const int64_t JP = lap_padded(h1), ghid_len = JP * P + (s->global ? JP * (P + 1) : 0);
    const int64_t team_len = K * O + P + n * P + ghid_len;
    const int teams = whole_samples ? nthreads : 1;
    const int64_t pool_len = FN(pool_buffers_len)(g, pp, 1, 0, tiles);
    /* every buffer before any work; zeroed: the partials are sums, the rows h1..JP of each
     * team's ghid stay zero, the phase planes keep zeros outside x. The parameter gradients:
     * thread 0 sums into gparams itself, the others into partials; a team (one sample at a
     * time) writes gparams alone, each thread its own entries (its channels of gw1 in step 3,
     * step 2's by thread 0) */
    const int64_t extra_sets = whole_samples ? nthreads - 1 : 0;
    T *partials = (T *)lap_calloc(extra_sets * params + 1, sizeof(T));
    T *all_gwn = (T *)lap_calloc(nthreads * K * OP + 1, sizeof(T));
    FN(lap_scratch) *team = (FN(lap_scratch) *)lap_calloc(nthreads, sizeof(FN(lap_scratch)));
    T *team_buf = (T *)lap_calloc(teams * team_len + 1, sizeof(T));
    T *pool_block = (T *)lap_calloc(nthreads * pool_len + 1, sizeof(T));
    int64_t *tap = tiles ? lap_taps(g) : 0;
    /* the global pool's weight gradient in pair lanes (weight_grad_pairs) where each thread
     * takes enough samples: a thread's buffer is then at most a quarter of its samples */
    const int pair_lanes = s->global && want_gw1 && LAP_PAIRS(JP) && whole_samples &&
                           g->B / nthreads * P >= 4 * LAP_V;
    T *pair_block = (T *)lap_calloc(pair_lanes ? nthreads * C * LAP_V + 1 : 1, sizeof(T));
    /* the global pool's grad_x reads w1 transposed when the copy costs at most an eighth of the
     * input, as lap_layer_forward's (at batch 1 it costs more than it saves) */
    const int by_wt = s->global && gx && JP == 8 && P >= LAP_V && 8 * JP <= g->B * P;
    T *wt = by_wt ? FN(transpose_padded)(w1, h1, C, JP) : 0;
    if (!(partials && all_gwn && team && team_buf && pool_block && (tap || !tiles) &&
          pair_block && (wt || !by_wt))) {
        free(wt);
        free(pair_block);
        free(tap);
        free(partials);
        free(all_gwn);
        free(team);
        free(team_buf);
        free(pool_block);
        lap_free_phases(&plan);
        return 1;
    }
    memset(gparams, 0, sizeof(T) * (params + 1));
    _Pragma("omp parallel num_threads(nthreads)") {
        const int tid = lap_thread(), nth = lap_threads();
        FN(lap_scratch) *mine = team + tid;
        T *shared = team_buf + (whole_samples ? tid : 0) * team_len;
        mine->gwn_own = all_gwn + tid * K * OP;
        mine->gwn = shared;
        mine->gs = shared + K * O;
        mine->gc = mine->gs + P;
        mine->ghid = mine->gc + n * P;
        mine->ghidT = mine->ghid + JP * P;
        mine->gw1x = pair_lanes ? pair_block + tid * C * LAP_V : 0;
        mine->wt = wt;
        FN(pool_buffers_bind)(&mine->pb, pool_block + tid * pool_len, g, pp, 1, 0, tap);
        mine->gw1 = tid == 0 || !whole_samples ? gparams : partials + (tid - 1) * params;
        mine->gb1 = mine->gw1 + h1 * C;
        mine->gw2 = mine->gb1 + h1;
        mine->gb2 = mine->gw2 + n * h;
        mine->gagg = mine->gw1 + params - conv_agg;
        mine->galpha = 0;
        if (whole_samples) {
            _Pragma("omp for schedule(static)")
            for (int64_t b = 0; b < g->B; ++b)
                FN(layer_backward_sample)(x, w1, w2, agg, hid, conc, score, wn, gpool, gconc, gscore,
                                          gx, want_gw1, g, s, (T)alpha, (T)eps, pp, b, 0, 1, mine,
                                          all_gwn);
#if LAP_PAIRS_BUILT
            for (int64_t c0 = 0; mine->gw1x && c0 < C; c0 += LAP_TV)
                FN(pair_sums_out)(mine->gw1x + c0 * LAP_V, h1, C - c0 < LAP_TV ? C - c0 : LAP_TV,
                                  mine->gw1 + c0, C);
#endif
        } else {
            for (int64_t b = 0; b < g->B; ++b)
                FN(layer_backward_sample)(x, w1, w2, agg, hid, conc, score, wn, gpool, gconc, gscore,
                                          gx, want_gw1, g, s, (T)alpha, (T)eps, pp, b, tid, nth,
                                          mine, all_gwn);
        }
    }
    double alpha_sum = 0;
    for (int64_t e = 0; e < params; ++e) {
        T sum = 0;
        for (int64_t t = 0; t < extra_sets; ++t) sum += partials[t * params + e];
        gparams[e] += sum;
    }
    for (int t = 0; t < nthreads; ++t) alpha_sum += team[t].galpha;
    gparams[params] = (T)alpha_sum;
    lap_free_phases(&plan);
    free(tap);
    free(wt);
    free(pair_block);
    free(pool_block);
    free(team_buf);
    free(team);
    free(all_gwn);
    free(partials);
    return 0;
}

#undef FN
#undef LAP_CAT
#undef LAP_CAT2
#undef LAP_PAIRS
#undef LAP_PAIRS_BUILT
