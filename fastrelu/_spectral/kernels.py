"""Batched ascent on the unit ball: the ReLU power iteration and its relatives, and the
quadrature behind the local Gaussian mean width (THEORY §7, §8).

:func:`ascend_block` maximises one of three objectives ``q`` over the closed unit ball,
from every starting point of a block at once::

    MODE_RELU    q(x) = |ReLU(W x - alpha) - ReLU(-alpha)|^2          K = W,      p = m
    MODE_FIT     q(x) = |ReLU(W x - alpha) - ReLU(L x - alpha)|^2     K = [W; L], p = 2m
    MODE_LINEAR  q(x) = <g, ReLU(W x - alpha)>  (one g per draw)       K = W,      p = m

Each iteration makes two dense products for the block's live starts: the ascent
directions ``G = R K`` (``R`` holds each start's residual, so that ``G`` is the gradient
of ``q``, up to the factor 2 of a square) and their images ``G K^T``. Every candidate point
is a combination of the current point, its direction and (accelerated steps) the previous
step, so its image ``K x`` is the same combination of images, and candidates are scored
without further products. The images are recomputed exactly every ``RESYNC`` iterations
and at the end, so round-off never accumulates; the final values are exact evaluations.

Step rules (``step_rule``):

- ``POWER``: ``x <- G / |G|``, always taken: the ReLU power iteration of THEORY §7 (zero
  bias, ``MODE_RELU``). ``q`` is convex and 2-homogeneous, so the step never decreases it.
- ``ACCELERATED``: adds a locally optimal (LOBPCG-type) candidate: the maximiser on the
  unit sphere of ``span{x, G, previous step}`` of the quadratic that ``q`` is on the
  current activation pattern (Rayleigh-Ritz: the top eigenvector of a 3 x 3 matrix for
  zero bias; with a bias, where that quadratic is not homogeneous, its local maximum
  on the 3-D sphere next to ``x`` by Newton's method on the sphere), scored by the
  true ``q``. For zero bias and ``MODE_RELU`` the better of it and the power step is
  taken (never worse than the power step, so never decreasing, and typically several
  times fewer iterations); otherwise the best of it and the line-search candidates,
  only if ``q`` increases.
- ``LINE_SEARCH``: conditional-gradient (Frank-Wolfe) steps ``x <- (1 - t) x + t G/|G|``
  inside the ball, ``t`` the best of ``LINE_STEPS`` halvings from an adaptive maximum,
  and their radial projections onto the sphere, taken only when ``q`` strictly
  increases (objectives that are not convex). Beside them the same steps towards
  ``d / |d|``, ``d`` the least-norm point of the segment between the previous
  direction and ``G``: where the iterates zigzag across a ridge of ``q`` (a kink where
  it is the minimum of two pieces), ``d`` points along it.

A start stops when the Frank-Wolfe gap ``max_{|y| <= 1} <G, y - x> = |G| - <G, x>`` is at
most ``tol |G|`` (converged: on the sphere, ``1 - cos`` of the angle between ``x`` and
``G``), when ``G = 0`` (a zero or flat piece of ``q``: nothing to ascend), when the line
search finds no ascent for steps down to ``T_MIN`` (stalled), or after ``max_iter``
iterations. Starts leave the block's products as soon as they stop.
"""

import math
from typing import NamedTuple

import numpy as np

from fastrelu._core.jit import REDUCTION_FASTMATH, kernel

MODE_RELU = 0
MODE_FIT = 1
MODE_LINEAR = 2

POWER = 0
ACCELERATED = 1
LINE_SEARCH = 2

CONVERGED = 0
MAX_ITER = 1
ZERO_GRADIENT = 2
STALLED = 3

#: Step sizes tried per line-search iteration: t_max, t_max / 2, ..., t_max / 2^7.
LINE_STEPS = 8
#: The line search gives up (status STALLED) once its largest step is below this.
T_MIN = 1e-12
#: The images K x are recomputed exactly every this many iterations.
RESYNC = 16
#: The previous step joins the Rayleigh-Ritz basis only when its part orthogonal to
#: ``x`` and ``G`` keeps this fraction of its length (else the basis is ill-conditioned
#: and the images of the basis vectors lose accuracy by cancellation).
KEEP_PREVIOUS = 1e-3


class Objective(NamedTuple):
    """What :func:`ascend_block` maximises and how."""

    #: MODE_RELU, MODE_FIT or MODE_LINEAR (see the module docstring).
    mode: int
    #: POWER, ACCELERATED (not for MODE_LINEAR) or LINE_SEARCH.
    step_rule: int
    #: (p, n), C-contiguous: ``W`` or ``[W; L]``.
    K: np.ndarray
    #: (n, p), C-contiguous: its transpose.
    KT: np.ndarray
    #: (m,) the subtracted bias.
    alpha: np.ndarray
    #: (m,) ``ReLU(-alpha)`` (MODE_RELU).
    shift: np.ndarray
    #: Iteration limit.
    max_iter: int
    #: Relative Frank-Wolfe gap at which a start has converged.
    tol: float


class Starts(NamedTuple):
    """The outputs of the ``b`` starts of one block."""

    #: (b, n): the final point of each start.
    out_x: np.ndarray
    #: (b,): exact ``q`` at ``out_x``.
    values: np.ndarray
    #: (b,) int64: iterations made.
    n_iter: np.ndarray
    #: (b,) int64: CONVERGED, MAX_ITER, ZERO_GRADIENT or STALLED.
    status: np.ndarray
    #: (h, max_iter + 1) for starts ``0 .. h-1`` (``h`` may be 0): ``q`` after each
    #: iteration, from the images carried along; entries after a start stopped are left
    #: untouched.
    history: np.ndarray


class StartRows(NamedTuple):
    """Per-start scratch of one block (``b`` rows each; ``p`` the rows of ``K``)."""

    Z: np.ndarray  #: (b, p) images ``X K^T``
    R: np.ndarray  #: (b, p) the ReLU part whose product with ``K`` is the gradient
    Grad: np.ndarray  #: (b, n) gradients
    Zg: np.ndarray  #: (b, p) images of the gradients
    P: np.ndarray  #: (b, n) previous steps
    Zp: np.ndarray  #: (b, p) their images
    Gp: np.ndarray  #: (b, n) previous directions
    Zgp: np.ndarray  #: (b, p) their images
    t_max: np.ndarray  #: (b,) largest step of the line search
    ids: np.ndarray  #: (b,) int64 start of each live row


class RitzScratch(NamedTuple):
    """Scratch of the locally optimal (Rayleigh-Ritz) step of one start."""

    Q: np.ndarray  #: (3, n) orthonormal basis of the search space
    H: np.ndarray  #: (3, 3) the quadratic on it
    V: np.ndarray  #: (3, 3) Newton scratch
    h: np.ndarray  #: (3,) its linear part
    c: np.ndarray  #: (3,) the maximiser's coefficients
    coef: np.ndarray  #: (3,) coefficients of the maximiser's image
    xr: np.ndarray  #: (n,) the candidate point
    xb: np.ndarray  #: (n,) the best point so far


@kernel(fastmath=REDUCTION_FASTMATH)
def _objective(mode, s1, z1, s2, z2, s3, z3, alpha, shift, g, m):
    """``q`` at the point whose image ``K x`` is ``s1 z1 + s2 z2 + s3 z3`` (each (p,))."""
    total = 0.0
    if mode == MODE_RELU:
        for i in range(m):
            d = max(s1 * z1[i] + s2 * z2[i] + s3 * z3[i] - alpha[i], 0.0) - shift[i]
            total += d * d
    elif mode == MODE_FIT:
        for i in range(m):
            j = m + i
            d = (max(s1 * z1[i] + s2 * z2[i] + s3 * z3[i] - alpha[i], 0.0)
                 - max(s1 * z1[j] + s2 * z2[j] + s3 * z3[j] - alpha[i], 0.0))
            total += d * d
    else:
        for i in range(m):
            total += g[i] * max(s1 * z1[i] + s2 * z2[i] + s3 * z3[i] - alpha[i], 0.0)
    return total


@kernel
def _set_point(mode, s1, z1, s2, z2, s3, z3, alpha, shift, g, m, z, r):
    """Make ``s1 z1 + s2 z2 + s3 z3`` the current image ``z`` (p,) (``z`` may be ``z1``)
    and write into ``r`` (p,) the residual whose product ``r K`` is the ascent direction:
    half the gradient of ``q`` (MODE_RELU, MODE_FIT) or its gradient (MODE_LINEAR).
    Where a pre-activation is exactly at its threshold the derivative 0 is used."""
    for i in range(z.shape[0]):
        z[i] = s1 * z1[i] + s2 * z2[i] + s3 * z3[i]
    if mode == MODE_RELU:
        for i in range(m):
            u = z[i] - alpha[i]
            r[i] = u - shift[i] if u > 0.0 else 0.0
    elif mode == MODE_FIT:
        for i in range(m):
            u = z[i] - alpha[i]
            v = z[m + i] - alpha[i]
            d = max(u, 0.0) - max(v, 0.0)
            r[i] = d if u > 0.0 else 0.0
            r[m + i] = -d if v > 0.0 else 0.0
    else:
        for i in range(m):
            r[i] = g[i] if z[i] - alpha[i] > 0.0 else 0.0


@kernel(fastmath=REDUCTION_FASTMATH)
def dot(a, b):
    total = 0.0
    for k in range(a.shape[0]):
        total += a[k] * b[k]
    return total


@kernel
def _cross_largest(M, lam, c):
    """Unit null vector of ``M - lam I`` (3 x 3): the largest cross product of two of
    its rows. Returns False when all of them vanish (``lam`` is not simple)."""
    best = 0.0
    for a, b in ((0, 1), (0, 2), (1, 2)):
        a0, a1, a2 = M[a, 0], M[a, 1], M[a, 2]
        b0, b1, b2 = M[b, 0], M[b, 1], M[b, 2]
        if a == 0:
            a0 -= lam
        elif a == 1:
            a1 -= lam
        if b == 1:
            b1 -= lam
        else:
            b2 -= lam
        x0 = a1 * b2 - a2 * b1
        x1 = a2 * b0 - a0 * b2
        x2 = a0 * b1 - a1 * b0
        size = x0 * x0 + x1 * x1 + x2 * x2
        if size > best:
            best = size
            c[0], c[1], c[2] = x0, x1, x2
    if not best > 0.0:
        return False
    inv = 1.0 / math.sqrt(best)
    for a in range(3):
        c[a] *= inv
    return True


@kernel
def top_eigenvector(M, dim, c):
    """Unit eigenvector ``c[:dim]`` of the largest eigenvalue of the symmetric
    ``M[:dim, :dim]`` (``dim`` 2 or 3), in closed form; returns the eigenvalue.

    ``dim = 3``: the largest root of the characteristic polynomial by the trigonometric
    formula, the eigenvector as the largest cross product of two rows of ``M - lam I``.
    A multiple largest eigenvalue gives the first unit vector (any eigenvector will do
    for a Ritz step, whose candidate is checked anyway).
    """
    if dim == 2:
        a, b, d = M[0, 0], M[0, 1], M[1, 1]
        half = 0.5 * (a - d)
        lam = 0.5 * (a + d) + math.sqrt(half * half + b * b)
        # null vector of M - lam I from its better-conditioned row
        u0, u1 = b, lam - a
        v0, v1 = lam - d, b
        if u0 * u0 + u1 * u1 >= v0 * v0 + v1 * v1:
            c[0], c[1] = u0, u1
        else:
            c[0], c[1] = v0, v1
        size = math.sqrt(c[0] * c[0] + c[1] * c[1])
        if size > 0.0:
            c[0] /= size
            c[1] /= size
        else:
            c[0], c[1] = 1.0, 0.0
        return lam
    off = M[0, 1] * M[0, 1] + M[0, 2] * M[0, 2] + M[1, 2] * M[1, 2]
    trace3 = (M[0, 0] + M[1, 1] + M[2, 2]) / 3.0
    d0, d1, d2 = M[0, 0] - trace3, M[1, 1] - trace3, M[2, 2] - trace3
    scale = math.sqrt((d0 * d0 + d1 * d1 + d2 * d2 + 2.0 * off) / 6.0)
    if not scale > 0.0:
        c[0], c[1], c[2] = 1.0, 0.0, 0.0
        return trace3
    # det((M - trace3 I) / scale) / 2 = cos(3 phi)
    inv = 1.0 / scale
    b00, b11, b22 = d0 * inv, d1 * inv, d2 * inv
    b01, b02, b12 = M[0, 1] * inv, M[0, 2] * inv, M[1, 2] * inv
    half_det = 0.5 * (b00 * (b11 * b22 - b12 * b12) - b01 * (b01 * b22 - b12 * b02)
                      + b02 * (b01 * b12 - b11 * b02))
    half_det = min(1.0, max(-1.0, half_det))
    lam = trace3 + 2.0 * scale * math.cos(math.acos(half_det) / 3.0)
    if not _cross_largest(M, lam, c):
        c[0], c[1], c[2] = 1.0, 0.0, 0.0
    return lam


@kernel
def sphere_newton(H, h, dim, c, T):
    """Local maximiser ``c[:dim]`` of ``c^T H c - 2 h^T c`` on the unit sphere near the
    first unit vector (``dim`` 2 or 3; ``T`` (2, 3) scratch).

    Newton's method on the sphere: with the multiplier ``lam = c^T (H c - h)`` and an
    orthonormal basis ``T`` of the tangent plane at ``c``, solve
    ``T^T (H - lam I) T eta = -T^T (H c - h)`` and move to ``(c + T eta) / |c + T eta|``.
    Returns True when it converged to a point where the tangent Hessian is negative
    definite (a local maximum); False otherwise (no candidate).
    """
    for k in range(dim):
        c[k] = 0.0
    c[0] = 1.0
    for _step in range(16):
        # the half gradient g = H c - h and the multiplier
        g0 = H[0, 0] * c[0] + H[0, 1] * c[1] + (H[0, 2] * c[2] if dim == 3 else 0.0) - h[0]
        g1 = H[1, 0] * c[0] + H[1, 1] * c[1] + (H[1, 2] * c[2] if dim == 3 else 0.0) - h[1]
        g2 = (H[2, 0] * c[0] + H[2, 1] * c[1] + H[2, 2] * c[2] - h[2]) if dim == 3 else 0.0
        lam = g0 * c[0] + g1 * c[1] + (g2 * c[2] if dim == 3 else 0.0)
        # tangent basis
        if dim == 2:
            T[0, 0], T[0, 1] = -c[1], c[0]
            k_t = 1
        else:
            axis = 0
            if abs(c[1]) < abs(c[axis]):
                axis = 1
            if abs(c[2]) < abs(c[axis]):
                axis = 2
            e0 = 1.0 if axis == 0 else 0.0
            e1 = 1.0 if axis == 1 else 0.0
            e2 = 1.0 if axis == 2 else 0.0
            proj = e0 * c[0] + e1 * c[1] + e2 * c[2]
            t0, t1, t2 = e0 - proj * c[0], e1 - proj * c[1], e2 - proj * c[2]
            size = math.sqrt(t0 * t0 + t1 * t1 + t2 * t2)
            t0, t1, t2 = t0 / size, t1 / size, t2 / size
            T[0, 0], T[0, 1], T[0, 2] = t0, t1, t2
            T[1, 0] = c[1] * t2 - c[2] * t1
            T[1, 1] = c[2] * t0 - c[0] * t2
            T[1, 2] = c[0] * t1 - c[1] * t0
            k_t = 2
        # reduced gradient r = T g and Hessian A = T (H - lam I) T^T
        r0 = T[0, 0] * g0 + T[0, 1] * g1 + (T[0, 2] * g2 if dim == 3 else 0.0)
        r1 = (T[1, 0] * g0 + T[1, 1] * g1 + T[1, 2] * g2) if k_t == 2 else 0.0
        a00 = 0.0
        a01 = 0.0
        a11 = 0.0
        for p in range(dim):
            for q in range(dim):
                hpq = H[p, q] - (lam if p == q else 0.0)
                a00 += T[0, p] * hpq * T[0, q]
                if k_t == 2:
                    a01 += T[0, p] * hpq * T[1, q]
                    a11 += T[1, p] * hpq * T[1, q]
        # a local maximum needs a negative definite tangent Hessian
        if k_t == 1:
            if not a00 < 0.0:
                return False
            eta0 = -r0 / a00
            eta1 = 0.0
        else:
            det = a00 * a11 - a01 * a01
            if not (a00 < 0.0 and det > 0.0):
                return False
            eta0 = -(a11 * r0 - a01 * r1) / det
            eta1 = -(a00 * r1 - a01 * r0) / det
        size = 0.0
        for k in range(dim):
            c[k] += eta0 * T[0, k] + (eta1 * T[1, k] if k_t == 2 else 0.0)
            size += c[k] * c[k]
        size = math.sqrt(size)
        for k in range(dim):
            c[k] /= size
        if abs(eta0) + abs(eta1) <= 1e-15:
            break
    return True


@kernel
def _segment_search(mode, z, z1, c1, z2, c2, xx, xu, t_start, alpha, shift, g, m):
    """Line search towards the unit vector ``u = c1 G1 + c2 G2`` (images ``z1, z2``) from a
    point ``x`` with image ``z``, ``|x|^2 = xx`` and ``<x, u> = xu``: the best of the points
    ``y_t = (1 - t) x + t u`` for ``t = t_start / 2^k`` (``k < LINE_STEPS``) and of their
    radial projections ``y_t / |y_t|`` onto the sphere (which follow the sphere where a
    maximum sits on it). Returns ``(q, t, scale)``: the best point is
    ``scale y_t``."""
    best_q = -math.inf
    best_t = 0.0
    best_scale = 1.0
    t = t_start
    for _s in range(LINE_STEPS):
        a = 1.0 - t
        q = _objective(mode, a, z, t * c1, z1, t * c2, z2, alpha, shift, g, m)
        if q > best_q:
            best_q, best_t, best_scale = q, t, 1.0
        rho2 = a * a * xx + 2.0 * a * t * xu + t * t
        if 0.0 < rho2 < 1.0:
            sc = 1.0 / math.sqrt(rho2)
            q = _objective(mode, sc * a, z, sc * t * c1, z1, sc * t * c2, z2, alpha, shift, g, m)
            if q > best_q:
                best_q, best_t, best_scale = q, t, sc
        t *= 0.5
    return best_q, best_t, best_scale


@kernel
def _bundle_direction(a, b):
    """The least-norm point ``d = lam a + (1 - lam) b`` of the segment ``[b, a]``: returns
    ``(lam, |d|)``, with ``|d| = 0`` when there is no useful one (no previous direction
    ``b = 0``, ``d = a``, or ``0`` in the segment)."""
    bb = 0.0
    ab = 0.0
    aa = 0.0
    for k in range(a.shape[0]):
        aa += a[k] * a[k]
        ab += a[k] * b[k]
        bb += b[k] * b[k]
    if bb == 0.0:
        return 1.0, 0.0
    diff2 = aa - 2.0 * ab + bb  # |a - b|^2
    if not diff2 > 1e-24 * max(aa, bb):
        return 1.0, 0.0
    lam = (bb - ab) / diff2
    if lam >= 1.0 - 1e-12:
        return 1.0, 0.0
    lam = max(lam, 0.0)
    d2 = lam * lam * aa + 2.0 * lam * (1.0 - lam) * ab + (1.0 - lam) * (1.0 - lam) * bb
    if not d2 > 1e-24 * max(aa, bb):
        return lam, 0.0
    return lam, math.sqrt(d2)


@kernel
def _move_row(src, dst, X, Z, R, Grad, P, Gp, Zgp, t_max, ids):
    """Copy the live start in row ``src`` to row ``dst`` (compaction)."""
    X[dst] = X[src]
    Z[dst] = Z[src]
    R[dst] = R[src]
    Grad[dst] = Grad[src]
    P[dst] = P[src]
    Gp[dst] = Gp[src]
    Zgp[dst] = Zgp[src]
    t_max[dst] = t_max[src]
    ids[dst] = ids[src]


@kernel(fastmath=REDUCTION_FASTMATH)
def _ritz_gram(mode, z, zg, zp, rho, g0, wn, a, b, qn, alpha, m, H, h):
    """The quadratic ``|A c - b|^2 = c^T H c - 2 h^T c + const`` that ``q`` is, on the
    current activation pattern, at ``y = c_0 q0 + c_1 q1 + c_2 q2``, whose images are
    ``z / rho``, ``(zg - g0 z / rho) / wn`` and ``(zp - a z / rho - b q1) / qn`` (pass
    ``qn = inf`` for a two-dimensional basis: then ``q2 = 0``).

    MODE_RELU: rows ``A_i = [z_i > alpha_i] (q0_i, q1_i, q2_i)``, ``b_i = ReLU(alpha_i)``
    on them. MODE_FIT: ``A_i = [u_i > 0] q^W_i - [v_i > 0] q^L_i`` (``u, v`` the two
    pre-activations), ``b_i = ([u_i > 0] - [v_i > 0]) alpha_i``.
    """
    h00 = 0.0
    h01 = 0.0
    h11 = 0.0
    h02 = 0.0
    h12 = 0.0
    h22 = 0.0
    v0 = 0.0
    v1 = 0.0
    v2 = 0.0
    inv_r = 1.0 / rho
    inv_w = 1.0 / wn
    inv_q = 1.0 / qn
    for i in range(m):
        q0 = z[i] * inv_r
        q1 = (zg[i] - g0 * q0) * inv_w
        q2 = (zp[i] - a * q0 - b * q1) * inv_q
        if mode == MODE_RELU:
            on = 1.0 if z[i] > alpha[i] else 0.0
            r0 = on * q0
            r1 = on * q1
            r2 = on * q2
            lift = on * max(alpha[i], 0.0)
        else:
            j = m + i
            l0 = z[j] * inv_r
            l1 = (zg[j] - g0 * l0) * inv_w
            l2 = (zp[j] - a * l0 - b * l1) * inv_q
            on_w = 1.0 if z[i] > alpha[i] else 0.0
            on_l = 1.0 if z[j] > alpha[i] else 0.0
            r0 = on_w * q0 - on_l * l0
            r1 = on_w * q1 - on_l * l1
            r2 = on_w * q2 - on_l * l2
            lift = (on_w - on_l) * alpha[i]
        h00 += r0 * r0
        h01 += r0 * r1
        h11 += r1 * r1
        h02 += r0 * r2
        h12 += r1 * r2
        h22 += r2 * r2
        v0 += r0 * lift
        v1 += r1 * lift
        v2 += r2 * lift
    H[0, 0] = h00
    H[0, 1] = h01
    H[1, 0] = h01
    H[1, 1] = h11
    H[0, 2] = h02
    H[2, 0] = h02
    H[1, 2] = h12
    H[2, 1] = h12
    H[2, 2] = h22
    h[0] = v0
    h[1] = v1
    h[2] = v2


@kernel
def _ritz_candidate(mode, homogeneous, x, grad, z, zg, p_prev, zp, has_p, alpha, m, ritz):
    """The locally optimal candidate: the maximiser on the unit sphere of
    ``span{x, G, previous step}`` of the quadratic that ``q`` is on the activation
    pattern at ``x``. Writes the unit point into ``xr`` and into ``coef`` (3,) the
    coefficients of its image ``coef[0] z + coef[1] zg + coef[2] zp``; returns False when
    the basis degenerates (then ``xr`` and ``coef`` mean nothing). ``zg`` and ``zp`` are
    the exact images of ``grad`` and ``p_prev``; ``ritz`` (:class:`RitzScratch`) holds
    ``xr``, ``coef`` and the scratch."""
    Q, H, V, h, c, coef, xr = ritz.Q, ritz.H, ritz.V, ritz.h, ritz.c, ritz.coef, ritz.xr
    n = x.shape[0]
    rho = math.sqrt(dot(x, x))
    if not rho > 0.0:
        return False
    for k in range(n):
        Q[0, k] = x[k] / rho
    g0 = dot(grad, Q[0])
    for k in range(n):
        Q[1, k] = grad[k] - g0 * Q[0, k]
    wn = math.sqrt(dot(Q[1], Q[1]))
    if not wn > 0.0:
        return False
    for k in range(n):
        Q[1, k] /= wn
    dim = 2
    a = 0.0
    b = 0.0
    qn = math.inf
    if has_p:
        pnorm = math.sqrt(dot(p_prev, p_prev))
        a = dot(p_prev, Q[0])
        b = dot(p_prev, Q[1])
        for k in range(n):
            Q[2, k] = p_prev[k] - a * Q[0, k] - b * Q[1, k]
        size = math.sqrt(dot(Q[2], Q[2]))
        if size > KEEP_PREVIOUS * pnorm:
            qn = size
            for k in range(n):
                Q[2, k] /= qn
            dim = 3
    _ritz_gram(mode, z, zg, zp if dim == 3 else zg, rho, g0, wn, a, b, qn, alpha, m, H, h)
    if homogeneous:
        top_eigenvector(H, dim, c)
        if c[0] < 0.0:
            for k in range(dim):
                c[k] = -c[k]
    elif not sphere_newton(H, h, dim, c, V):
        return False
    c2 = c[2] if dim == 3 else 0.0
    for k in range(n):
        xr[k] = c[0] * Q[0, k] + c[1] * Q[1, k] + c2 * Q[2, k]
    norm = math.sqrt(dot(xr, xr))
    if not norm > 0.0:
        return False
    inv = 1.0 / norm
    for k in range(n):
        xr[k] *= inv
    # c0 z / rho + c1 (zg - g0 z / rho) / wn + c2 (zp - a z / rho - b q1) / qn, over norm
    inv_q = 1.0 / qn
    coef[0] = (c[0] - c[1] * g0 / wn - c2 * (a - b * g0 / wn) * inv_q) / rho * inv
    coef[1] = (c[1] - c2 * b * inv_q) / wn * inv
    coef[2] = c2 * inv_q * inv
    return True


@kernel(inline="always")
def _retire_stopped(X, live, it, tol, starts, rows):
    """Record the starts among the ``live`` rows that stopped at iteration ``it``
    (zero gradient, Frank-Wolfe gap within ``tol``, or a step too small) in ``starts``
    and move the last live row into each freed one; returns the number still live."""
    Grad, t_max, ids = rows.Grad, rows.t_max, rows.ids
    j = 0
    while j < live:
        gnorm = math.sqrt(dot(Grad[j], Grad[j]))
        code = -1
        if gnorm == 0.0:
            code = ZERO_GRADIENT
        elif gnorm - dot(Grad[j], X[j]) <= tol * gnorm:
            code = CONVERGED
        elif t_max[j] < T_MIN:
            code = STALLED
        if code < 0:
            j += 1
            continue
        sid = ids[j]
        starts.status[sid] = code
        starts.n_iter[sid] = it
        starts.out_x[sid] = X[j]
        live -= 1
        if j < live:
            _move_row(live, j, X, rows.Z, rows.R, Grad, rows.P, rows.Gp, rows.Zgp, t_max, ids)
    return live


@kernel(inline="always")
def _search_step(objective, X, rows, j, inv, g, xb):
    """The line-search candidates of start ``j`` (``inv = 1 / |G|``, ``g`` its Gaussian
    vector): along the segment towards ``G / |G|`` and, across a ridge, along the
    least-norm point of the previous and the current direction. Writes the better point
    into ``xb``; returns ``(q, s0, s1, s2, bundled, t)``: its value, the coefficients of
    its image ``s0 Z + s1 Zg + s2 Zgp`` (``s2`` only when ``bundled``) and the step
    along the first segment."""
    mode, alpha, shift = objective.mode, objective.alpha, objective.shift
    Z, Zg, Zgp, Grad, Gp = rows.Z, rows.Zg, rows.Zgp, rows.Grad, rows.Gp
    m = alpha.shape[0]
    n = X.shape[1]
    s2 = 0.0
    bundled = False
    xx = dot(X[j], X[j])
    gx = dot(Grad[j], X[j])
    # towards u = G / |G|
    best_q, best_t, scale = _segment_search(mode, Z[j], Zg[j], inv, Zg[j], 0.0, xx, gx * inv,
                                            rows.t_max[j], alpha, shift, g, m)
    s0, s1 = scale * (1.0 - best_t), scale * best_t * inv
    # across a ridge (a kink where q is a minimum of two pieces) the directions
    # alternate: the least-norm point d of the segment between the previous direction
    # and this one points along the ridge
    lam, dnorm = _bundle_direction(Grad[j], Gp[j])
    if dnorm > 0.0:
        c1, c2 = lam / dnorm, (1.0 - lam) / dnorm
        xu = c1 * gx + c2 * dot(Gp[j], X[j])
        q, t, sc = _segment_search(mode, Z[j], Zg[j], c1, Zgp[j], c2, xx, xu, 1.0, alpha,
                                   shift, g, m)
        if q > best_q:
            best_q = q
            s0, s1, s2 = sc * (1.0 - t), sc * t * c1, sc * t * c2
            bundled = True
    for k in range(n):
        xb[k] = s0 * X[j, k] + s1 * Grad[j, k] + (s2 * Gp[j, k] if bundled else 0.0)
    return best_q, s0, s1, s2, bundled, best_t


@kernel
def ascend_block(objective, X, draws, per_draw, starts, rows, ritz):
    """Ascend ``q`` from every start of one block.

    Parameters
    ----------
    objective : Objective
        What is maximised, by which step rule, until when.
    X : (b, n) starting points in the unit ball; overwritten (scratch).
    draws : (d, m) the Gaussian vectors ``g`` (MODE_LINEAR): start ``s`` uses
        ``draws[s // per_draw]``; any (1, m) array otherwise, with ``per_draw >= b``.
    starts : Starts
        The outputs of the ``b`` starts.
    rows : StartRows
        Per-start scratch of ``b`` rows.
    ritz : RitzScratch
        Scratch of the locally optimal step.
    """
    mode, step_rule, K, KT = objective.mode, objective.step_rule, objective.K, objective.KT
    alpha, shift = objective.alpha, objective.shift
    max_iter, tol = objective.max_iter, objective.tol
    out_x, values, n_iter = starts.out_x, starts.values, starts.n_iter
    status, history = starts.status, starts.history
    Z, R, Grad, Zg, P = rows.Z, rows.R, rows.Grad, rows.Zg, rows.P
    Zp, Gp, Zgp, t_max, ids = rows.Zp, rows.Gp, rows.Zgp, rows.t_max, rows.ids
    coef, xr, xb = ritz.coef, ritz.xr, ritz.xb
    b, n = X.shape
    m = alpha.shape[0]
    n_hist = history.shape[0]
    homogeneous = True
    for i in range(m):
        if alpha[i] != 0.0:
            homogeneous = False
    # the power step alone never decreases q only for MODE_RELU with zero bias
    power_safe = mode == MODE_RELU and homogeneous
    for j in range(b):
        ids[j] = j
        t_max[j] = 1.0
        Gp[j] = 0.0  # no previous direction yet
        status[j] = MAX_ITER
        n_iter[j] = max_iter
    it = 0
    live = b
    while live > 0 and it < max_iter:
        if it % RESYNC == 0:
            # Z = X K^T, exactly: the images carried along drift by round-off
            np.dot(X[:live], KT, Z[:live])
            for j in range(live):
                sid = ids[j]
                g = draws[sid // per_draw]
                values[sid] = _objective(mode, 1.0, Z[j], 0.0, Z[j], 0.0, Z[j], alpha, shift,
                                         g, m)
                _set_point(mode, 1.0, Z[j], 0.0, Z[j], 0.0, Z[j], alpha, shift, g, m, Z[j], R[j])
                if it == 0 and sid < n_hist:
                    history[sid, 0] = values[sid]
        # Grad = R K
        np.dot(R[:live], K, Grad[:live])
        live = _retire_stopped(X, live, it, tol, starts, rows)
        if live == 0:
            break
        # Zg = G K^T: the images of the directions (and of the previous steps)
        np.dot(Grad[:live], KT, Zg[:live])
        with_previous = step_rule == ACCELERATED and it > 0
        if with_previous:
            np.dot(P[:live], KT, Zp[:live])
        for j in range(live):
            sid = ids[j]
            g = draws[sid // per_draw]
            inv = 1.0 / math.sqrt(dot(Grad[j], Grad[j]))
            z3 = Zp[j] if with_previous else Zg[j]  # Zp holds nothing before the first step
            # candidates: image s0 Z + s1 Zg + s2 z3 (Zgp if bundled), point in xb, value best_q
            s0, s1, s2 = 0.0, 0.0, 0.0
            bundled = False
            best_q = -math.inf
            searched = step_rule == LINE_SEARCH or (step_rule == ACCELERATED and not power_safe)
            if searched:
                best_q, s0, s1, s2, bundled, fw_t = _search_step(objective, X, rows, j, inv, g,
                                                                 xb)
            else:
                # the power step x <- G / |G|
                best_q = _objective(mode, 0.0, Z[j], inv, Zg[j], 0.0, Zg[j], alpha, shift, g, m)
                s1 = inv
                for k in range(n):
                    xb[k] = Grad[j, k] * inv
            if step_rule == ACCELERATED:
                if _ritz_candidate(mode, homogeneous, X[j], Grad[j], Z[j], Zg[j], P[j], z3,
                                   with_previous, alpha, m, ritz):
                    q = _objective(mode, coef[0], Z[j], coef[1], Zg[j], coef[2], z3, alpha,
                                   shift, g, m)
                    if q > best_q:
                        best_q = q
                        s0, s1, s2 = coef[0], coef[1], coef[2]
                        bundled = False
                        xb[:] = xr
            if not power_safe:
                if not best_q > values[sid]:
                    t_max[j] *= 0.5 ** LINE_STEPS
                    continue
                if searched:
                    t_max[j] = min(1.0, 2.0 * fw_t)
            for k in range(n):
                P[j, k] = xb[k] - X[j, k]  # the step, whose image the next product gives
                X[j, k] = xb[k]
            _set_point(mode, s0, Z[j], s1, Zg[j], s2, Zgp[j] if bundled else z3, alpha, shift,
                       g, m, Z[j], R[j])
            if searched:
                Gp[j] = Grad[j]  # the direction at the point just left
                Zgp[j] = Zg[j]
            values[sid] = best_q
        it += 1
        for j in range(live):
            sid = ids[j]
            if sid < n_hist:
                history[sid, it] = values[sid]
    for j in range(live):
        out_x[ids[j]] = X[j]
    # exact values at the final points: Z = out_x K^T
    np.dot(out_x, KT, Z)
    for j in range(b):
        values[j] = _objective(mode, 1.0, Z[j], 0.0, Z[j], 0.0, Z[j], alpha, shift,
                               draws[j // per_draw], m)


@kernel
def local_width(lam, nodes, weights, out):
    """Gaussian mean width ``E sqrt(sum_j lam_j h_j^2)``, ``h ~ N(0, I_n)``, per row of
    ``lam`` (shape (c, n), nonnegative) into ``out`` (c,).

    From ``sqrt(q) = (1 / (2 sqrt(pi))) int_0^inf (1 - exp(-t q)) t^(-3/2) dt`` and
    ``E exp(-t sum_j lam_j h_j^2) = prod_j (1 + 2 lam_j t)^(-1/2)``, with
    ``t = exp(v) / (2 Lambda)`` (``Lambda = max_j lam_j``, ``c_j = lam_j / Lambda``)::

        E sqrt(Q) = sqrt(2 Lambda) / (2 sqrt(pi))
                    * int (1 - prod_j (1 + c_j e^v)^(-1/2)) e^(-v/2) dv

    integrated by the trapezoidal rule on ``nodes = e^(v_k)`` with
    ``weights = h e^(-v_k / 2)``. ``prod_j (1 + c_j x) = 1 + s`` is accumulated as
    ``s <- s + c_j x (1 + s)`` (positive terms only), and ``1 - (1 + s)^(-1/2)`` is
    formed without cancellation, so small ``v`` lose no accuracy.
    """
    count = lam.shape[0]
    n = lam.shape[1]
    scale = 1.0 / (2.0 * math.sqrt(math.pi))
    for row in range(count):
        top = 0.0
        for j in range(n):
            top = max(top, lam[row, j])
        if not top > 0.0:
            out[row] = 0.0
            continue
        total = 0.0
        for k in range(nodes.shape[0]):
            x = nodes[k]
            s = 0.0
            for j in range(n):
                cj = lam[row, j]
                if cj > 0.0:
                    s += (cj / top) * x * (1.0 + s)
            root = math.sqrt(1.0 + s)
            if s < 1.0:
                f = s / (root * (1.0 + root))
            else:
                f = 1.0 - 1.0 / root
            total += f * weights[k]
        out[row] = math.sqrt(2.0 * top) * scale * total
