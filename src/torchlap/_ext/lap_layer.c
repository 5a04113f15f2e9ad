/* (Not compiled on its own: included twice by lap_cpu.c; named .c so that the package data
 * glob of the kernel sources ships it.)
 *
 * One fused call each way for a whole LAP layer: concept scorer (Eq. 3), window normalisation
 * (Eq. 4) and weighted window sum (Eq. 1). Included twice by lap_cpu.c, with T = float / double,
 * SUFFIX = f32 / f64 and EXP = expf / exp.
 *
 * Shapes (all contiguous, P = H * W pixels, K = kh * kw offsets, O = Ho * Wo windows):
 *   x (B, C, P); w1 (h1, C), b1 (h1); w2 (n, h), b2 (n) when hidden h > 0 (then h1 = h, else
 *   h1 = n and the first convolution is the last); hid (B, h, P) pre-ReLU hidden activations
 *   (hidden > 0 only); concepts (B, n, P); score (B, P); wn (B, K, Ho, Wo) the normalised
 *   window weights (0 at padded positions); pooled (B, C, Ho, Wo).
 * The global pool is the window that covers the whole map (kh = H, kw = W, Ho = Wo = 1), with
 * a dot product per channel plane instead of the row-wise window loops.
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

static void FN(split_row)(const T *restrict row, T *restrict phases, int64_t W, int64_t sw,
                          int64_t len) {
    for (int64_t m = 0; m < sw; ++m) {
        T *restrict dst = phases + m * len;
        int64_t t = 0;
        for (int64_t col = m; col < W; col += sw) dst[t++] = row[col];
        for (; t < len; ++t) dst[t] = 0;
    }
}

/* windowed sum of one (b, c) plane: op (Ho, Wo) = sum_k wb[k] * x window; phases: sw*len+1 */
static void FN(pool_plane)(const T *xp, const T *wb, T *op, const lap_geometry *g,
                           const column_plan *cp, T *phases) {
    const int64_t O = g->Ho * g->Wo;
    memset(op, 0, sizeof(T) * O);
    for (int64_t r = 0; r < g->H; ++r) {
        int64_t i0, i1;
        rows_of_input(g, r, &i0, &i1);
        if (i1 < i0) continue;
        const T *src = xp + r * g->W;
        if (g->sw > 1) {
            FN(split_row)(src, phases, g->W, g->sw, cp->phase_len);
            src = phases;
        }
        for (int64_t i = i0; i <= i1; ++i) {
            const int64_t a = r + g->ph - i * g->sh;
            T *restrict orow = op + i * g->Wo;
            for (int64_t q = 0; q < g->kw; ++q) {
                const T *restrict wrow = wb + (a * g->kw + q) * O + i * g->Wo;
                const T *restrict xs = src + cp->phase[q] * cp->phase_len + cp->shift[q];
                for (int64_t j = cp->lo[q]; j < cp->hi[q]; ++j) orow[j] += wrow[j] * xs[j];
            }
        }
    }
}

/* backward of pool_plane for one plane: writes gxp (H, W) when not NULL (every element), adds
 * sum grad_out * x into gwp (K, Ho, Wo) when not NULL; xph, gph: sw*len+1 each */
static void FN(unpool_plane)(const T *xp, const T *wb, const T *gp, T *gxp, T *gwp,
                             const lap_geometry *g, const column_plan *cp, T *xph, T *gph) {
    const int64_t O = g->Ho * g->Wo, len = cp->phase_len, sw = g->sw;
    for (int64_t r = 0; r < g->H; ++r) {
        int64_t i0, i1;
        rows_of_input(g, r, &i0, &i1);
        const T *xs_row = xp + r * g->W;
        if (gwp && sw > 1 && i1 >= i0) {
            FN(split_row)(xs_row, xph, g->W, sw, len);
            xs_row = xph;
        }
        T *gx_row = 0;
        if (gxp) {
            gx_row = sw > 1 ? gph : gxp + r * g->W;
            memset(gx_row, 0, sizeof(T) * (sw > 1 ? sw * len : g->W));
        }
        for (int64_t i = i0; i <= i1; ++i) {
            const int64_t a = r + g->ph - i * g->sh;
            const T *restrict grow = gp + i * g->Wo;
            for (int64_t q = 0; q < g->kw; ++q) {
                const int64_t k = a * g->kw + q;
                const T *restrict wrow = wb + k * O + i * g->Wo;
                const int64_t at = cp->phase[q] * len + cp->shift[q];
                const int64_t lo = cp->lo[q], hi = cp->hi[q];
                if (gx_row) {
                    T *restrict gxs = gx_row + at;
                    for (int64_t j = lo; j < hi; ++j) gxs[j] += grow[j] * wrow[j];
                }
                if (gwp) {
                    const T *restrict xs = xs_row + at;
                    T *restrict gwrow = gwp + k * O + i * g->Wo;
                    for (int64_t j = lo; j < hi; ++j) gwrow[j] += grow[j] * xs[j];
                }
            }
        }
        if (gx_row && sw > 1) {
            T *restrict dst = gxp + r * g->W;
            for (int64_t m = 0; m < sw; ++m) {
                const T *restrict src = gph + m * len;
                int64_t t = 0;
                for (int64_t col = m; col < g->W; col += sw) dst[col] = src[t++];
            }
        }
    }
}

typedef T FN(vec) __attribute__((vector_size(LAP_VBYTES)));
#define LAP_V ((int64_t)(LAP_VBYTES / sizeof(T)))

static inline FN(vec) FN(load)(const T *p) {
    FN(vec) v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline T FN(hsum)(FN(vec) v) {
    T sum = 0;
    for (int64_t l = 0; l < LAP_V; ++l) sum += v[l];
    return sum;
}

/* w^T (C, JP) of w (h1, C), rows h1..JP zero: the 1x1 convolution kernels take 8 outputs of a
 * pixel vector per input channel, with the 8 weights side by side */
static T *FN(transpose_padded)(const T *w, int64_t h1, int64_t C, int64_t JP) {
    T *wt = (T *)calloc((size_t)(C * JP + 1), sizeof(T));
    for (int64_t j = 0; j < h1; ++j)
        for (int64_t c = 0; c < C; ++c) wt[c * JP + j] = w[j * C + c];
    return wt;
}

/* acc[j, t] = b1[j] + sum_c w1[j, c] xr[c, t] for t < len (rows j < JP, acc rows LAP_BLOCK) */
static void FN(conv_block)(const T *xr, int64_t P, int64_t C, const T *wt, int64_t JP,
                           const T *b1, int64_t h1, T *acc, int64_t len) {
    for (int64_t jg = 0; jg < JP; jg += 8) {
        T bias[8];
        for (int64_t jj = 0; jj < 8; ++jj) bias[jj] = jg + jj < h1 ? b1[jg + jj] : (T)0;
        int64_t t0 = 0;
        for (; t0 + LAP_V <= len; t0 += LAP_V) {
            FN(vec) a[8];
            for (int64_t jj = 0; jj < 8; ++jj) a[jj] = (FN(vec)){0} + bias[jj];
            const T *xc = xr + t0, *wc = wt + jg;
            for (int64_t c = 0; c < C; ++c, xc += P, wc += JP) {
                const FN(vec) xv = FN(load)(xc);
                for (int64_t jj = 0; jj < 8; ++jj) a[jj] += wc[jj] * xv;
            }
            for (int64_t jj = 0; jj < 8; ++jj)
                memcpy(acc + (jg + jj) * LAP_BLOCK + t0, &a[jj], sizeof a[jj]);
        }
        for (int64_t t = t0; t < len; ++t) {
            T a[8];
            for (int64_t jj = 0; jj < 8; ++jj) a[jj] = bias[jj];
            for (int64_t c = 0; c < C; ++c) {
                const T xv = xr[c * P + t];
                for (int64_t jj = 0; jj < 8; ++jj) a[jj] += wt[c * JP + jg + jj] * xv;
            }
            for (int64_t jj = 0; jj < 8; ++jj) acc[(jg + jj) * LAP_BLOCK + t] = a[jj];
        }
    }
}

/* one channel plane of the input gradient: gxp = start + sum_j w1[j, c] ghid[j] (start: 0,
 * pool_scale * pool_w (the global pool's term), or gxp's content (the windowed term)), and
 * gw1[j, c] += sum_p ghid[j, p] x[p]; ghid has JP rows (rows >= h1 zero), wc = w1^T row c */
static void FN(input_grad_plane)(const T *xp, T *gxp, const T *ghid, int64_t P, const T *wc,
                                 int64_t JP, int64_t h1, T *gw1, int64_t C, int want_gw1,
                                 int start, T pool_scale, const T *pool_w) {
    for (int64_t jg = 0; jg < JP; jg += 8) {
        const int first = jg == 0;
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
            if (gxp) {
                if (!first || start == 2)
                    gv = FN(load)(gxp + t0);
                else if (start == 1)
                    gv = pool_scale * FN(load)(pool_w + t0);
            }
            for (int64_t jj = 0; jj < 8; ++jj) {
                const FN(vec) hv = FN(load)(ghid + (jg + jj) * P + t0);
                gv += wc[jg + jj] * hv;
                d[jj] += hv * xv;
            }
            if (gxp) memcpy(gxp + t0, &gv, sizeof gv);
        }
        for (int64_t t = t0; t < P; ++t) {
            const T xv = xp[t];
            T gv = 0;
            if (gxp) {
                if (!first || start == 2)
                    gv = gxp[t];
                else if (start == 1)
                    gv = pool_scale * pool_w[t];
            }
            for (int64_t jj = 0; jj < 8; ++jj) {
                const T hv = ghid[(jg + jj) * P + t];
                gv += wc[jg + jj] * hv;
                dt[jj] += hv * xv;
            }
            if (gxp) gxp[t] = gv;
        }
        if (want_gw1)
            for (int64_t jj = 0; jj < 8 && jg + jj < h1; ++jj)
                gw1[(jg + jj) * C] += FN(hsum)(d[jj]) + dt[jj];
    }
}

/* pool_plane over the tap list (small maps) */
static void FN(pool_plane_taps)(const T *restrict xp, const T *restrict wb, T *restrict op,
                                int64_t O, const lap_taps *t) {
    for (int64_t o = 0; o < O; ++o) {
        T acc = 0;
        for (int32_t e = t->first[o]; e < t->first[o + 1]; ++e) acc += wb[t->kidx[e]] * xp[t->pix[e]];
        op[o] = acc;
    }
}

/* unpool_plane over the tap list: gxp (zeroed here) and gwp as there, each may be NULL */
static void FN(unpool_plane_taps)(const T *restrict xp, const T *restrict wb,
                                  const T *restrict gp, T *restrict gxp, T *restrict gwp,
                                  int64_t P, int64_t O, const lap_taps *t) {
    if (gxp) memset(gxp, 0, sizeof(T) * P);
    for (int64_t o = 0; o < O; ++o) {
        const T gv = gp[o];
        for (int32_t e = t->first[o]; e < t->first[o + 1]; ++e) {
            if (gxp) gxp[t->pix[e]] += wb[t->kidx[e]] * gv;
            if (gwp) gwp[t->kidx[e]] += gv * xp[t->pix[e]];
        }
    }
}

/* the 1x1 convolutions, sigmoid and aggregation for pixels [p0, p1) of one sample */
static void FN(score_pixels)(const T *xb, const T *wt, const T *b1, const T *w2, const T *b2,
                             T *hid, T *conc, T *score, int64_t C, int64_t P,
                             const lap_layer_spec *s, int64_t p0, int64_t p1, T *scratch) {
    const int64_t h = s->hidden, n = s->concepts, h1 = h > 0 ? h : n, JP = lap_padded(h1);
    T *acc = scratch, *z = scratch + JP * LAP_BLOCK;
    for (int64_t start = p0; start < p1; start += LAP_BLOCK) {
        const int64_t len = p1 - start < LAP_BLOCK ? p1 - start : LAP_BLOCK;
        FN(conv_block)(xb + start, P, C, wt, JP, b1, h1, acc, len);
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
                    for (int64_t t = 0; t < len; ++t) zk[t] += wv * (a[t] > 0 ? a[t] : (T)0);
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
    const int64_t O = g->Ho * g->Wo;
    const T a2 = alpha * alpha;
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
                    const T v = sc[r * g->W + col], d = m - v;
                    const T w = EXP(-a2 * (d * d)) * v + eps;
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
    const T a2 = alpha * alpha;
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
                    const T v = sc[r * g->W + col], d = m - v;
                    total += EXP(-a2 * (d * d)) * v + eps;
                }
            }
            for (int64_t a = 0; a < g->kh; ++a) {
                const int64_t r = i * g->sh - g->ph + a;
                if (r < 0 || r >= g->H) continue;
                for (int64_t q = 0; q < g->kw; ++q) {
                    const int64_t col = j * g->sw - g->pw + q, k = a * g->kw + q;
                    if (col < 0 || col >= g->W) continue;
                    const T v = sc[r * g->W + col], d = m - v;
                    const T gauss = EXP(-a2 * (d * d));
                    const T gw = (gwn[k * O + o] - dot) / total;
                    gs[r * g->W + col] += gw * (gauss + 2 * a2 * v * gauss * d);
                    gm -= gw * 2 * a2 * v * gauss * d;
                    galpha -= (double)(gw * 2 * alpha * d * d * v * gauss);
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
 * gw2 (n, h), gb2 (n), gb1 (h1). gc is (n, P) scratch. */
static void FN(score_backward)(const T *hid, const T *conc, const T *gcext, const T *gs,
                               const T *w2, T *ghid, T *gc, T *gw2, T *gb2, T *gb1, int64_t P,
                               const lap_layer_spec *s) {
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
                for (int64_t p = 0; p < P; ++p) acc += gk[p] * (hj[p] > 0 ? hj[p] : (T)0);
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

static void FN(layer_forward_sample)(const T *x, const T *wt, const T *b1, const T *w2,
                                     const T *b2, T *hid, T *conc, T *score, T *wn, T *pooled,
                                     const lap_geometry *g, const lap_layer_spec *s, T alpha,
                                     T eps, const column_plan *cp, const lap_taps *taps,
                                     int64_t b, int tid, int nth, T *scratch, T *phases) {
    const int64_t C = g->C, P = g->H * g->W, O = g->Ho * g->Wo, K = g->kh * g->kw;
    const int64_t h = s->hidden, n = s->concepts;
    const T *xb = x + b * C * P;
    T *sb = score + b * P, *wnb = wn + b * K * O;
    int64_t lo, hi;
    lap_part((P + LAP_BLOCK - 1) / LAP_BLOCK, tid, nth, &lo, &hi);
    lo *= LAP_BLOCK;
    hi = hi * LAP_BLOCK < P ? hi * LAP_BLOCK : P;
    if (lo < hi)
        FN(score_pixels)(xb, wt, b1, w2, b2, h > 0 ? hid + b * h * P : 0, conc + b * n * P, sb,
                         C, P, s, lo, hi, scratch);
    LAP_BARRIER(nth);
    if (tid == 0) FN(window_weights)(sb, wnb, g, alpha, eps);
    LAP_BARRIER(nth);
    lap_part(C, tid, nth, &lo, &hi);
    for (int64_t c = lo; c < hi; ++c) {
        const T *restrict xp = xb + c * P;
        T *op = pooled + (b * C + c) * O;
        if (s->global) {
            T acc = 0;
            LAP_SIMD_SUM(acc)
            for (int64_t p = 0; p < P; ++p) acc += wnb[p] * xp[p];
            op[0] = acc;
        } else {
            if (taps)
                FN(pool_plane_taps)(xp, wnb, op, O, taps);
            else
                FN(pool_plane)(xp, wnb, op, g, cp, phases);
        }
    }
}

void FN(lap_layer_forward)(const T *x, const T *w1, const T *b1, const T *w2, const T *b2,
                           T *hid, T *conc, T *score, T *wn, T *pooled, const lap_geometry *g,
                           const lap_layer_spec *s, double alpha, double eps, int nthreads) {
    const int64_t h = s->hidden, n = s->concepts, h1 = h > 0 ? h : n, JP = lap_padded(h1);
    column_plan cp;
    if (!s->global) plan_columns(g, &cp);
    const int64_t phase_len = s->global ? 1 : g->sw * cp.phase_len + 1;
    const int whole_samples = g->B >= nthreads;
    T *wt = FN(transpose_padded)(w1, h1, g->C, JP);
    lap_taps tap_list = {0, 0, 0};
    const int use_taps = !s->global && g->Wo < LAP_TAPS_BELOW && lap_make_taps(g, &tap_list);
    const lap_taps *taps = use_taps ? &tap_list : 0;
    _Pragma("omp parallel num_threads(nthreads)") {
        T *scratch = (T *)malloc(sizeof(T) * ((JP + n) * LAP_BLOCK + phase_len));
        T *phases = scratch + (JP + n) * LAP_BLOCK;
        if (whole_samples) {
            _Pragma("omp for schedule(static)")
            for (int64_t b = 0; b < g->B; ++b)
                FN(layer_forward_sample)(x, wt, b1, w2, b2, hid, conc, score, wn, pooled, g, s,
                                         (T)alpha, (T)eps, &cp, taps, b, 0, 1, scratch,
                                         phases);
        } else {
            const int tid = lap_thread(), nth = lap_threads();
            for (int64_t b = 0; b < g->B; ++b) {
                FN(layer_forward_sample)(x, wt, b1, w2, b2, hid, conc, score, wn, pooled, g, s,
                                         (T)alpha, (T)eps, &cp, taps, b, tid, nth,
                                         scratch, phases);
                LAP_BARRIER(nth);
            }
        }
        free(scratch);
    }
    lap_free_taps(&tap_list);
    free(wt);
}

/* per-thread scratch and parameter-gradient partials of the backward */
typedef struct {
    T *gwn_own;               /* (K * O) this thread's share of d loss / d wn */
    T *gwn, *gs, *gc, *ghid;  /* the team's: (K * O), (P), (n * P), (h1 * P) */
    T *xph, *gph;             /* row phases of the windowed kernels */
    T *gw1, *gb1, *gw2, *gb2; /* this thread's partial parameter gradients */
    double galpha;
} FN(lap_scratch);

static void FN(layer_backward_sample)(const T *x, const T *wt, const T *w2, const T *hid,
                                      const T *conc, const T *score, const T *wn, const T *gpool,
                                      const T *gconc, const T *gscore, T *gx, int want_gw1,
                                      const lap_geometry *g, const lap_layer_spec *s, T alpha,
                                      T eps, const column_plan *cp, const lap_taps *taps,
                                      int64_t b, int tid, int nth,
                                      FN(lap_scratch) *mine, T *all_gwn) {
    const int64_t C = g->C, P = g->H * g->W, O = g->Ho * g->Wo, K = g->kh * g->kw;
    const int64_t h = s->hidden, n = s->concepts, h1 = h > 0 ? h : n, JP = lap_padded(h1);
    const T *xb = x + b * C * P, *wnb = wn + b * K * O, *sb = score + b * P;
    const T *gpb = gpool ? gpool + b * C * O : 0;
    int64_t lo, hi;
    /* 1: d loss / d wn = sum_c grad_pooled * x (each thread over its channels, then summed) */
    if (gpb) {
        memset(mine->gwn_own, 0, sizeof(T) * K * O);
        lap_part(C, tid, nth, &lo, &hi);
        for (int64_t c = lo; c < hi; ++c) {
            const T *restrict xp = xb + c * P;
            if (s->global) {
                const T gv = gpb[c];
                T *restrict gw = mine->gwn_own;
                for (int64_t p = 0; p < P; ++p) gw[p] += gv * xp[p];
            } else {
                /* the pooling term of grad_x too (step 3 adds the scorer's term) */
                T *gxp = gx ? gx + (b * C + c) * P : 0;
                if (taps)
                    FN(unpool_plane_taps)(xp, wnb, gpb + c * O, gxp, mine->gwn_own, P, O, taps);
                else
                    FN(unpool_plane)(xp, wnb, gpb + c * O, gxp, mine->gwn_own, g, cp, mine->xph,
                                     mine->gph);
            }
        }
        if (nth > 1) {
            _Pragma("omp barrier");
            lap_part(K * O, tid, nth, &lo, &hi);
            for (int64_t e = lo; e < hi; ++e) {
                T sum = 0;
                for (int t = 0; t < nth; ++t) sum += all_gwn[t * K * O + e];
                mine->gwn[e] = sum;
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
            mine->galpha += FN(window_weights_backward)(sb, wnb, nth > 1 ? mine->gwn : mine->gwn_own,
                                                        mine->gs, g, alpha, eps);
        FN(score_backward)(h > 0 ? hid + b * h * P : 0, conc + b * n * P,
                           gconc ? gconc + b * n * P : 0, mine->gs, w2, mine->ghid, mine->gc,
                           mine->gw2, mine->gb2, mine->gb1, P, s);
    }
    LAP_BARRIER(nth);
    /* 3: grad_x = pooling term + w1^T ghid, and grad w1 = ghid x^T, one channel plane at a time */
    lap_part(C, tid, nth, &lo, &hi);
    for (int64_t c = lo; c < hi; ++c) {
        const T *restrict xp = xb + c * P;
        T *restrict gxp = gx ? gx + (b * C + c) * P : 0;
        /* the pooling term of grad_x: in gxp since step 1 (windows), or pool_scale * wn */
        const int start = gxp && gpb ? (s->global ? 1 : 2) : 0;
        if (gxp || want_gw1)
            FN(input_grad_plane)(xp, gxp, mine->ghid, P, wt + c * JP, JP, h1, mine->gw1 + c, C,
                                 want_gw1, start, gpb ? gpb[c] : (T)0, wnb);
    }
    LAP_BARRIER(nth);
}

/* Gradients of a LAP layer. gpool (B, C, Ho, Wo), gconc (B, n, P), gscore (B, P) may each be
 * NULL (no gradient flows into that output); gx (B, C, P) may be NULL (not wanted). gparams is
 * overwritten with the parameter gradients, one after the other: gw1 (h1, C) (zeros unless
 * want_gw1), gb1 (h1), gw2 (n, h) and gb2 (n) (when hidden > 0), galpha (1). */
void FN(lap_layer_backward)(const T *x, const T *w1, const T *w2, const T *hid, const T *conc,
                            const T *score, const T *wn, const T *gpool, const T *gconc,
                            const T *gscore, T *gx, T *gparams, const lap_geometry *g,
                            const lap_layer_spec *s, double alpha, double eps, int want_gw1,
                            int nthreads) {
    const int64_t C = g->C, P = g->H * g->W, O = g->Ho * g->Wo, K = g->kh * g->kw;
    const int64_t h = s->hidden, n = s->concepts, h1 = h > 0 ? h : n;
    column_plan cp;
    if (!s->global) plan_columns(g, &cp);
    const int64_t phase_len = s->global ? 1 : g->sw * cp.phase_len + 1;
    const int whole_samples = g->B >= nthreads;
    const int64_t params = h1 * C + h1 + (h > 0 ? n * h + n : 0);
    T *partials = (T *)calloc((size_t)(nthreads * params), sizeof(T));
    T *all_gwn = (T *)malloc(sizeof(T) * (nthreads * K * O + 1));
    FN(lap_scratch) *team = (FN(lap_scratch) *)calloc((size_t)nthreads, sizeof(FN(lap_scratch)));
    /* team buffers: one set per thread when threads take whole samples, else one shared set */
    const int64_t JP = lap_padded(h1), team_len = K * O + P + n * P + JP * P;
    const int teams = whole_samples ? nthreads : 1;
    /* zeroed: the rows h1..JP of each team's ghid stay zero */
    T *team_buf = (T *)calloc((size_t)(teams * team_len + 1), sizeof(T));
    T *wt = FN(transpose_padded)(w1, h1, C, JP);
    lap_taps tap_list = {0, 0, 0};
    const int use_taps = !s->global && g->Wo < LAP_TAPS_BELOW && lap_make_taps(g, &tap_list);
    const lap_taps *taps = use_taps ? &tap_list : 0;
    _Pragma("omp parallel num_threads(nthreads)") {
        const int tid = lap_thread(), nth = lap_threads();
        FN(lap_scratch) *mine = team + tid;
        T *shared = team_buf + (whole_samples ? tid : 0) * team_len;
        T *phases = (T *)malloc(sizeof(T) * 2 * phase_len);
        mine->gwn_own = all_gwn + tid * K * O;
        mine->gwn = shared;
        mine->gs = shared + K * O;
        mine->gc = mine->gs + P;
        mine->ghid = mine->gc + n * P;
        mine->xph = phases;
        mine->gph = phases + phase_len;
        mine->gw1 = partials + tid * params;
        mine->gb1 = mine->gw1 + h1 * C;
        mine->gw2 = mine->gb1 + h1;
        mine->gb2 = mine->gw2 + n * h;
        mine->galpha = 0;
        if (whole_samples) {
            _Pragma("omp for schedule(static)")
            for (int64_t b = 0; b < g->B; ++b)
                FN(layer_backward_sample)(x, wt, w2, hid, conc, score, wn, gpool, gconc, gscore,
                                          gx, want_gw1, g, s, (T)alpha, (T)eps, &cp, taps, b, 0, 1,
                                          mine, all_gwn);
        } else {
            for (int64_t b = 0; b < g->B; ++b)
                FN(layer_backward_sample)(x, wt, w2, hid, conc, score, wn, gpool, gconc, gscore,
                                          gx, want_gw1, g, s, (T)alpha, (T)eps, &cp, taps, b, tid,
                                          nth, mine, all_gwn);
        }
        free(phases);
    }
    double alpha_sum = 0;
    for (int64_t e = 0; e < params; ++e) {
        T sum = 0;
        for (int t = 0; t < nthreads; ++t) sum += partials[t * params + e];
        gparams[e] = sum;
    }
    for (int t = 0; t < nthreads; ++t) alpha_sum += team[t].galpha;
    gparams[params] = (T)alpha_sum;
    lap_free_taps(&tap_list);
    free(wt);
    free(team_buf);
    free(team);
    free(all_gwn);
    free(partials);
}

#undef FN
#undef LAP_CAT
#undef LAP_CAT2
