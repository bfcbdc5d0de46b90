/*
 * Dense kernels of the batched reconstruction (used by _reconstruct.pyx).
 *
 * Written with the vector extensions of GCC and Clang so that the arithmetic runs in
 * SIMD registers whatever the compiler's auto-vectoriser decides:
 *
 * - fr_gram_upper: S = G^T G for the gathered active rows G of one sample, in register
 *   tiles of 4 rows by 2 vectors of S;
 * - fr_*_lanes: Cholesky factorisation, Cholesky solves, residuals and Hager's estimate
 *   of |S^{-1}|_1 for FR_LANES samples at once, one sample per SIMD lane. The lanes
 *   never mix: every lane performs the same sequence of IEEE operations it would
 *   perform alone, so a sample's result does not depend on the samples beside it.
 *
 * Matrices in lane layout are row-major (n, n) arrays of fr_vec with row stride
 * ld = fr_lane_stride(n) >= n (entry (a, c) of lane l at double offset
 * (a * ld + c) * FR_LANES + l; the caller allocates n * ld vectors); only the upper
 * triangle is used.
 */
#ifndef FASTRELU_LANES_H
#define FASTRELU_LANES_H

#include <math.h>
#include <stddef.h>

#include "_cholesky_lanes.h"

#if (defined(__GNUC__) || defined(__clang__)) && !defined(FR_NO_VECTOR_EXTENSIONS)

#if defined(__AVX__)
#define FR_LANES 4
#else
#define FR_LANES 2
#endif

/* aligned(8): loads and stores at any double address; may_alias: views of double arrays */
typedef double fr_vec
    __attribute__((vector_size(FR_LANES * sizeof(double)), aligned(sizeof(double)), may_alias));
#define FR_RESTRICT __restrict__
#define FR_ALWAYS_INLINE static inline __attribute__((always_inline))

#else /* other compilers: one sample per "lane", the same code in plain doubles */

#define FR_LANES 1
typedef double fr_vec;
#define FR_RESTRICT
#define FR_ALWAYS_INLINE static
#endif

/* Row strides of gathered rows are multiples of this: a tile reads 4 entries from a row
 * and 2 vectors from another. */
#define FR_ROW_ALIGN (2 * FR_LANES > 4 ? 2 * FR_LANES : 4)

/* lane l of a vector (or the double itself) */
#define FR_LANE(v, l) (((double *)&(v))[l])

static fr_vec fr_splat(double value)
{
    fr_vec v = {0};
    return v + value;
}

/* One 4 x (2 FR_LANES) tile of S at (a0, c0): acc[0..7] plus (or, with subtract, minus)
 * the sum over the k rows of G of G[i, a0 + r] G[i, c0 + t], in row order. */
FR_ALWAYS_INLINE void
fr_gram_tile(const double *G, int k, int stride, int a0, int c0, fr_vec *acc,
             const int subtract)
{
    fr_vec l0 = acc[0], h0 = acc[1], l1 = acc[2], h1 = acc[3];
    fr_vec l2 = acc[4], h2 = acc[5], l3 = acc[6], h3 = acc[7];
    const double *row = G;
    for (int i = 0; i < k; i++, row += stride) {
        fr_vec lo = *(const fr_vec *)(row + c0);
        fr_vec hi = *(const fr_vec *)(row + c0 + FR_LANES);
        double x0 = row[a0], x1 = row[a0 + 1], x2 = row[a0 + 2], x3 = row[a0 + 3];
        if (subtract) {
            l0 -= x0 * lo; h0 -= x0 * hi;
            l1 -= x1 * lo; h1 -= x1 * hi;
            l2 -= x2 * lo; h2 -= x2 * hi;
            l3 -= x3 * lo; h3 -= x3 * hi;
        } else {
            l0 += x0 * lo; h0 += x0 * hi;
            l1 += x1 * lo; h1 += x1 * hi;
            l2 += x2 * lo; h2 += x2 * hi;
            l3 += x3 * lo; h3 += x3 * hi;
        }
    }
    acc[0] = l0; acc[1] = h0; acc[2] = l1; acc[3] = h1;
    acc[4] = l2; acc[5] = h2; acc[6] = l3; acc[7] = h3;
}

/* S[a * rs + c * cs] = sum over the k rows i of G[i, a] G[i, c], for a <= c < n, or
 * base[a, c] minus that sum when base is given (a down-date; base is (rows, stride) with
 * at least n rounded up to 4 rows, zero outside the upper triangle).
 * G is (k, stride), stride a multiple of FR_ROW_ALIGN, columns n .. stride-1 zero.
 * Each entry is accumulated over the rows in order, one multiply-add per row. */
static void fr_gram_upper(const double *G, int k, int stride, int n, const double *base,
                          double *S, ptrdiff_t rs, ptrdiff_t cs)
{
    const int width = 2 * FR_LANES;
    for (int a0 = 0; a0 < n; a0 += 4) {
        for (int c0 = a0 / width * width; c0 < n; c0 += width) {
            fr_vec acc[8];
            for (int r = 0; r < 8; r++)
                acc[r] = fr_splat(0.0);
            if (base) {
                for (int r = 0; r < 4; r++) {
                    const double *from = base + (ptrdiff_t)(a0 + r) * stride + c0;
                    acc[2 * r] = *(const fr_vec *)from;
                    acc[2 * r + 1] = *(const fr_vec *)(from + FR_LANES);
                }
                fr_gram_tile(G, k, stride, a0, c0, acc, 1);
            } else {
                fr_gram_tile(G, k, stride, a0, c0, acc, 0);
            }
            for (int r = 0; r < 4 && a0 + r < n; r++) {
                int a = a0 + r;
                for (int t = 0; t < width; t++) {
                    int c = c0 + t;
                    if (c >= a && c < n)
                        S[a * rs + c * cs] = FR_LANE(acc[2 * r + t / FR_LANES], t % FR_LANES);
                }
            }
        }
    }
}

/* b = sum over the active rows (active[a] != 0) of (y[a] + alpha[a]) w_a, in row order,
 * and into G (rows of stride doubles, zero from column n on) the rows that form S_I:
 * the active ones or, when downdate is allowed, the inactive ones are fewer and their
 * squared norms (sq) sum to at most those of the active ones, the inactive ones
 * (S_I = S - their Gram matrix; the bound keeps the rounding of the subtraction within
 * a small factor of that of the direct sum). Returns the number of active rows; *inactive
 * tells which rows G holds and *rows how many. */
static int fr_gather(const unsigned char *FR_RESTRICT active, const double *FR_RESTRICT y,
                     const double *FR_RESTRICT alpha, const double *FR_RESTRICT W,
                     const double *FR_RESTRICT sq, int m, int n, int stride, int downdate,
                     double *FR_RESTRICT G, double *FR_RESTRICT b, int *inactive, int *rows)
{
    int count = 0, kept = 0;
    double on = 0.0, off = 0.0;
    for (int a = 0; a < m; a++) {
        if (active[a]) {
            count++;
            on += sq[a];
        } else {
            off += sq[a];
        }
    }
    const int use_inactive = downdate && 2 * count > m && off <= on;
    for (int k = 0; k < n; k++)
        b[k] = 0.0;
    for (int a = 0; a < m; a++) {
        const double *FR_RESTRICT w = W + (ptrdiff_t)a * n;
        if (active[a]) {
            double value = y[a] + alpha[a];
            for (int k = 0; k < n; k++)
                b[k] += value * w[k];
        }
        if ((active[a] != 0) != use_inactive) {
            double *FR_RESTRICT g = G + (ptrdiff_t)kept * stride;
            for (int k = 0; k < n; k++)
                g[k] = w[k];
            for (int k = n; k < stride; k++)
                g[k] = 0.0;
            kept++;
        }
    }
    *inactive = use_inactive;
    *rows = kept;
    return count;
}

static ptrdiff_t fr_cholesky_lanes_passed(double *data, ptrdiff_t n, double tol2,
                                          double margin)
{
    ptrdiff_t ld = fr_lane_stride(n);
    FR_CHOLESKY_LANES_BODY(fr_vec, FR_LANES, ld)
}

/* In place: the upper triangle of each lane's S becomes R with S = R^T R (see
 * _cholesky_lanes.h). Returns the mask of lanes with a pivot that is not positive; such
 * a lane is meaningless. */
static unsigned fr_cholesky_lanes(double *data, int n)
{
    return (unsigned)~fr_cholesky_lanes_passed(data, n, 0.0, 0.0) & ((1u << FR_LANES) - 1u);
}

/* In place: x <- S^{-1} x with S = R^T R (R from fr_cholesky_lanes). */
static void fr_solve_lanes(const fr_vec *R, fr_vec *x, int n)
{
    const ptrdiff_t ld = fr_lane_stride(n);
    for (int k = 0; k < n; k++) { /* R^T y = x */
        const fr_vec *rk = R + (ptrdiff_t)k * ld;
        fr_vec v = x[k] / rk[k];
        x[k] = v;
        for (int p = k + 1; p < n; p++)
            x[p] -= rk[p] * v;
    }
    for (int k = n - 1; k >= 0; k--) { /* R x = y: column k of R */
        fr_vec v = x[k] / R[(ptrdiff_t)k * ld + k];
        x[k] = v;
        for (int p = 0; p < k; p++)
            x[p] -= R[(ptrdiff_t)p * ld + k] * v;
    }
}

/* In place: x <- S^{-1} x with S = R^T R (R from fr_cholesky_lanes). */
static void fr_cholesky_solve_lanes(const double *R, double *x, int n)
{
    fr_solve_lanes((const fr_vec *)R, (fr_vec *)x, n);
}

/* r = b - S x for the symmetric S given by its upper triangle. */
static void fr_residual_lanes(const double *S_data, const double *x_data, const double *b_data,
                              double *r_data, int n)
{
    const fr_vec *S = (const fr_vec *)S_data, *x = (const fr_vec *)x_data;
    const fr_vec *b = (const fr_vec *)b_data;
    fr_vec *r = (fr_vec *)r_data;
    const ptrdiff_t ld = fr_lane_stride(n);
    for (int k = 0; k < n; k++)
        r[k] = b[k];
    for (int j = 0; j < n; j++) {
        fr_vec xj = x[j];
        for (int k = 0; k < j; k++)
            r[k] -= S[(ptrdiff_t)k * ld + j] * xj;
        const fr_vec *row = S + (ptrdiff_t)j * ld;
        for (int k = j; k < n; k++)
            r[k] -= row[k] * xj;
    }
}

/* |S|_1 (largest absolute column sum) of each lane's symmetric S (upper triangle). */
static void fr_norm1_lanes(const double *S_data, double *column_data, int n, double *norm)
{
    const fr_vec *S = (const fr_vec *)S_data;
    fr_vec *column = (fr_vec *)column_data;
    const ptrdiff_t ld = fr_lane_stride(n);
    for (int c = 0; c < n; c++)
        column[c] = fr_splat(0.0);
    for (int a = 0; a < n; a++) {
        const fr_vec *row = S + (ptrdiff_t)a * ld;
        for (int c = a; c < n; c++) {
            fr_vec v = row[c];
            for (int l = 0; l < FR_LANES; l++)
                FR_LANE(v, l) = fabs(FR_LANE(v, l));
            column[c] += v;
            if (c != a)
                column[a] += v;
        }
    }
    for (int l = 0; l < FR_LANES; l++) {
        norm[l] = 0.0;
        for (int c = 0; c < n; c++)
            if (FR_LANE(column[c], l) > norm[l])
                norm[l] = FR_LANE(column[c], l);
    }
}

/* Hager's estimate of |S^{-1}|_1 (the estimator behind LAPACK's condition numbers, a
 * lower bound that is in practice within a small factor) for each lane, S = R^T R.
 * v and w are scratch vectors of n entries; every lane follows its own iterations. */
static void fr_inverse_norm1_lanes(const double *R_data, double *v_data, double *w_data,
                                   int n, double *estimate)
{
    const fr_vec *R = (const fr_vec *)R_data;
    fr_vec *v = (fr_vec *)v_data, *w = (fr_vec *)w_data;
    int previous[FR_LANES], running[FR_LANES], remaining = FR_LANES;
    for (int l = 0; l < FR_LANES; l++) {
        previous[l] = -1;
        running[l] = 1;
        estimate[l] = 0.0;
    }
    for (int it = 0; it < 5 && remaining > 0; it++) {
        for (int k = 0; k < n; k++) /* the current vector: uniform, then a unit vector */
            for (int l = 0; l < FR_LANES; l++)
                FR_LANE(v[k], l) = previous[l] < 0 ? 1.0 / n : 0.0;
        for (int l = 0; l < FR_LANES; l++)
            if (previous[l] >= 0)
                FR_LANE(v[previous[l]], l) = 1.0;
        fr_solve_lanes(R, v, n); /* y = S^{-1} x */
        for (int l = 0; l < FR_LANES; l++) {
            if (!running[l])
                continue;
            double total = 0.0;
            for (int k = 0; k < n; k++)
                total += fabs(FR_LANE(v[k], l));
            estimate[l] = total;
        }
        for (int k = 0; k < n; k++)
            for (int l = 0; l < FR_LANES; l++)
                FR_LANE(w[k], l) = FR_LANE(v[k], l) >= 0.0 ? 1.0 : -1.0;
        fr_solve_lanes(R, w, n); /* z = S^{-T} sign(y) = S^{-1} sign(y) */
        for (int l = 0; l < FR_LANES; l++) {
            if (!running[l])
                continue;
            double largest = -1.0, inner = 0.0;
            int best = 0;
            for (int k = 0; k < n; k++)
                if (fabs(FR_LANE(w[k], l)) > largest) {
                    largest = fabs(FR_LANE(w[k], l));
                    best = k;
                }
            if (previous[l] < 0) {
                for (int k = 0; k < n; k++)
                    inner += FR_LANE(w[k], l);
                inner /= n;
            } else {
                inner = FR_LANE(w[previous[l]], l);
            }
            /* no ascent direction left (z^T x is the gradient's value at x), or a repeat */
            if (largest <= inner || best == previous[l]) {
                running[l] = 0;
                remaining--;
            } else {
                previous[l] = best;
            }
        }
    }
}

#endif
