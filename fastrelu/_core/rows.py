"""The row set-up every most-correlated-basis computation shares: scaling rows by
powers of two, unit rows and their Gram matrix, repeated rows, the tile size, and the
rank tolerance (THEORY §2, §3)."""

import math

import numpy as np

from fastrelu._core.memory import memory_limit

#: The Gram matrix of the unit rows is stored, and the candidates' entries are gathered
#: from it, when its ``8 m^2`` bytes take at most this share of the memory fastrelu may
#: use (:func:`fastrelu._core.memory.memory_limit`: ``FASTRELU_MEMORY_LIMIT``, else 90%
#: of the available memory) and it pays for itself (:func:`stores_gram`). Else each
#: sample's certificate forms the Gram matrix of its gathered rows.
GRAM_MEMORY_SHARE = 0.125
#: A cap on the rows whose Gram matrix is stored, or None (by memory and cost alone).
GRAM_MAX_ROWS = None


def stores_gram(m, n=None, samples=None):
    """Is the Gram matrix of ``m`` unit rows in dimension ``n`` stored for a run over
    ``samples`` samples? When it fits ``GRAM_MEMORY_SHARE`` of the memory limit (and
    ``m <= GRAM_MAX_ROWS`` when that is set), and, where samples are certified one at a
    time (:func:`fastrelu._core.basis.certify_one_by_one`) and their number is given,
    when forming it costs less than forming each sample's ``n x n`` Gram matrix instead:
    ``m^2 n / 2`` multiply-adds once (``dsyrk``, all cores) against ``n^3 / 2`` per
    sample, so from ``samples >= (m / n)^2`` on. A run decides it once (MCBE records it
    with its checkpoints): it changes the speed, and at most the last bit of an inner
    product, never the rule. Only a run whose result is one for all its samples (MCBE's
    minima) passes ``samples``: per-sample results (pointwise checks, reconstruction)
    must not depend on the samples beside them, so there the rows alone decide."""
    if GRAM_MAX_ROWS is not None and m > GRAM_MAX_ROWS:
        return False
    limit, _ = memory_limit()
    if limit is not None and 8.0 * m * m > GRAM_MEMORY_SHARE * limit:
        return False
    if n is None or samples is None:
        return True
    from fastrelu._core.basis import certify_one_by_one

    return not certify_one_by_one(n) or float(samples) * n * n >= float(m) * m


#: Default rank tolerance: a unit row this close to the span of the kept ones is dependent.
DEFAULT_RANK_TOL = 1e-6


#: Without a stored Gram matrix, repeated rows are looked for among the pairs whose
#: projections on two fixed directions lie close (a sort, ``O(m n + m log m)``) rather
#: than in all ``m^2 / 2`` inner products; when more than this many pairs per row pass
#: that filter (rows clustered on the directions), among all pairs by blocks of the
#: product instead.
REPEAT_CANDIDATES_PER_ROW = 64


def repeated_rows(unit_rows, rank_tol, gram):
    """Indices of rows whose unit direction is within ``rank_tol`` of an earlier row's
    that is not itself repeated: rows are taken by increasing index, and each row not yet
    marked marks the later rows within ``rank_tol`` of it (``|u_i - u_j|^2 <= rank_tol^2``,
    that is ``<u_i, u_j> >= 1 - rank_tol^2 / 2``). The inner products are the stored
    Gram matrix's entries when ``gram`` is given; else those of the pairs that pass the
    projection filter (:data:`REPEAT_CANDIDATES_PER_ROW`), each by one dot product, which
    can differ from the Gram matrix's entry in its last bits (a pair exactly at the
    threshold may be decided differently; the result is the same on every run)."""
    m = unit_rows.shape[0]
    limit = 1.0 - 0.5 * rank_tol**2
    if gram is None:
        pairs = _close_pairs(unit_rows, rank_tol, limit)
        if pairs is not None:
            return _first_marks(m, *pairs)
    repeated = np.zeros(m, dtype=bool)
    step = 1024
    for start in range(0, m, step):
        block = gram[start:start + step] if gram is not None else unit_rows[start:start + step] @ unit_rows.T
        for local, row in enumerate(block):
            i = start + local
            if not repeated[i] and i + 1 < m:
                close = np.flatnonzero(row[i + 1:] >= limit)
                repeated[i + 1 + close] = True
    return np.flatnonzero(repeated).astype(np.int64)


def _close_pairs(unit_rows, rank_tol, limit):
    """The pairs ``(i, j)``, ``i < j``, of unit rows with ``<u_i, u_j> >= limit``, or
    None when the projection filter lets too many candidates through.

    A pair within ``rank_tol`` of each other has projections on a unit direction ``r``
    within ``rank_tol`` too; the window ``2 sqrt(rank_tol^2 + 4 n eps)`` also covers the
    rounding of the unit rows' lengths, of the projections and of the inner product that
    decides, so no pair the inner product would accept is filtered out. Zero rows (inner
    product 0) never pair. The inner products that decide are taken pair by pair (the
    same value as the Gram matrix's entry up to its rounding), in chunks whose rows take
    no more than 1024 rows of the Gram matrix would."""
    m, n = unit_rows.shape
    nonzero = np.flatnonzero(np.any(unit_rows != 0, axis=1)) if n else np.empty(0, dtype=np.int64)
    k = nonzero.size
    none = np.empty(0, dtype=np.int64)
    if k < 2:
        return none, none
    eps = np.finfo(np.float64).eps
    window = 2.0 * np.sqrt(rank_tol**2 + 4.0 * n * eps)
    # two fixed unit directions (a function of n alone: the same filter on every run)
    directions = np.random.default_rng(0x5EED).standard_normal((n, 2))
    directions /= np.linalg.norm(directions, axis=0)
    projections = unit_rows[nonzero] @ directions
    order = np.argsort(projections[:, 0], kind="stable")
    first = projections[order, 0]
    ends = np.searchsorted(first, first + window, side="right")
    counts = ends - np.arange(k) - 1
    total = int(counts.sum())
    if total > REPEAT_CANDIDATES_PER_ROW * m:
        return None
    a = np.repeat(np.arange(k), counts)
    b = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts) + a + 1
    i, j = order[a], order[b]
    near = np.abs(projections[i, 1] - projections[j, 1]) <= window
    i, j = nonzero[i[near]], nonzero[j[near]]
    close = np.zeros(i.size, dtype=bool)
    step = max(1, (512 * m) // max(n, 1))  # 2 x step x n entries: 1024 rows of the Gram matrix
    for start in range(0, i.size, step):
        part = slice(start, start + step)
        inner = np.einsum("ij,ij->i", unit_rows[i[part]], unit_rows[j[part]])
        close[part] = inner >= limit
    i, j = i[close], j[close]
    return np.minimum(i, j), np.maximum(i, j)


def _first_marks(m, earlier, later):
    """The rows marked by the rule of :func:`repeated_rows` from the close pairs
    ``(earlier[k], later[k])``, ``earlier < later``."""
    repeated = np.zeros(m, dtype=bool)
    by_earlier = np.argsort(earlier, kind="stable")
    earlier, later = earlier[by_earlier], later[by_earlier]
    starts = np.flatnonzero(np.r_[True, earlier[1:] != earlier[:-1]]) if earlier.size else []
    bounds = [*starts, earlier.size]
    for k in range(len(bounds) - 1):
        i = earlier[bounds[k]]
        if not repeated[i]:
            repeated[later[bounds[k]:bounds[k + 1]]] = True
    return np.flatnonzero(repeated).astype(np.int64)


def row_exponents(W):
    """``(exponents, scaled)``: per row the binary exponent ``e_i`` of its entry of
    largest magnitude and the rows ``W_i / 2^e_i``, whose largest entries lie in
    ``[0.5, 1)`` (``e_i = 0`` for a zero row).

    Scaling by a power of two is exact (barring entries that fall below the smallest
    subnormal, which cannot matter beside the row's largest entry), so every quantity
    that is invariant under positive row scaling -- unit rows, normalised correlations,
    most correlated bases -- comes out bit for bit as from ``W`` itself, and for any
    finite row: squares and inner products of the scaled rows neither overflow nor
    underflow. A value of the row's scale is then ``2^e_i`` times the scaled row's value
    (:func:`numpy.ldexp`, exact again).
    """
    largest = np.max(np.abs(W), axis=1) if W.shape[1] else np.zeros(W.shape[0])
    exponents = np.frexp(largest)[1].astype(np.int64)
    return exponents, np.ascontiguousarray(np.ldexp(W, -exponents[:, None]))


def row_norms(W):
    """The Euclidean norms of the rows of ``W`` without intermediate overflow or
    underflow (``+inf`` only for a row whose norm exceeds the largest float)."""
    exponents, scaled = row_exponents(W)
    return np.ldexp(np.linalg.norm(scaled, axis=1), exponents)


def normalised_rows(W, use_gram=None):
    """``(norms, inv_norm, unit_rows, use_gram, gram)`` of the rows of ``W``: the unit
    rows and, when ``use_gram`` (None: :func:`stores_gram` by the rows alone; MCBE passes
    its run's decision), their Gram matrix (a ``(1, 1)`` placeholder otherwise). A zero row gets ``inv_norm = 0`` and a zero unit row, which never counts as
    independent. The norms and unit rows are computed from the rows scaled by powers of
    two (:func:`row_exponents`), so any finite row works; ``inv_norm`` overflows to
    ``+inf`` only for rows shorter than about ``5.6e-309``."""
    exponents, scaled = row_exponents(W)
    scaled_norms = np.linalg.norm(scaled, axis=1)
    norms = np.ldexp(scaled_norms, exponents)
    nonzero = scaled_norms > 0
    safe = np.where(nonzero, scaled_norms, 1.0)
    inv_norm = np.where(nonzero, np.ldexp(1.0 / safe, -exponents), 0.0)
    unit_rows = np.ascontiguousarray(scaled / safe[:, None])
    use_gram = stores_gram(W.shape[0]) if use_gram is None else bool(use_gram)
    gram = gram_of_rows(unit_rows) if use_gram else np.zeros((1, 1))
    return norms, inv_norm, unit_rows, use_gram, gram


#: Rows per panel of :func:`gram_of_rows`. Each panel's diagonal block is computed whole
#: (``m GRAM_PANEL n / 2`` multiply-adds more than the triangle), but smaller panels keep
#: both cores busy to the end: at 16384 x 2048 rows 1024-row panels took 7.1 s against
#: 7.9 s for 4096 (3.1 s against 3.5 s at 16384 x 768; AMD EPYC Zen 4, 2 cores).
GRAM_PANEL = 1024
#: Side of the tiles in which :func:`gram_of_rows` mirrors its upper triangle.
MIRROR_TILE = 512


#: Largest output of one multi-threaded ``dsyrk`` (:func:`cross_product`); above it, panels.
SYRK_MAX = 8192


def cross_product(A):
    """``A^T A``: one ``dsyrk`` up to ``SYRK_MAX`` columns, else by panels
    (:func:`gram_of_rows` of ``A^T``), for the reason given there."""
    if A.shape[1] <= SYRK_MAX:
        return A.T @ A
    return gram_of_rows(A.T)


def gram_of_rows(U):
    """``U U^T``: one ``dsyrk`` up to ``SYRK_MAX`` rows; above, by panels of
    ``GRAM_PANEL`` rows, each panel's products with itself and the rows after it (one
    ``dgemm``), the upper triangle then mirrored below by tiles (a cache-sized transpose;
    one strided copy of the whole is four times slower), so ``m^2 n / 2`` multiply-adds
    as one ``dsyrk`` would take, and an exactly symmetric result. Not one ``dsyrk``
    there: OpenBLAS 0.3.31's multi-threaded ``dsyrk`` crashes (segmentation fault) on
    AVX-512 machines (seen on an AMD EPYC Zen 4) for outputs from about 16,000 rows with
    a few hundred columns."""
    m = U.shape[0]
    if m <= SYRK_MAX:
        return U @ U.T
    G = np.empty((m, m))
    for start in range(0, m, GRAM_PANEL):
        stop = min(m, start + GRAM_PANEL)
        np.matmul(U[start:stop], U[start:].T, out=G[start:stop, start:])  # in place: no copy
    tile = MIRROR_TILE
    for i in range(0, m, tile):
        block = G[i:i + tile, i:i + tile]
        block[...] = np.triu(block) + np.triu(block, 1).T
        for j in range(i + tile, m, tile):
            G[j:j + tile, i:i + tile] = G[i:i + tile, j:j + tile].T
    return G


#: From this input dimension on, a tile holds at most ``LARGE_TILE`` points: a point's
#: basis costs ``n^3 / 6`` multiply-adds there, far more than its share of the product,
#: and small tiles let a few points be shared out among the threads (work is split at
#: tile boundaries, so that each product is the same whatever the split).
LARGE_TILE_N = 256
LARGE_TILE = 8


def tile_rows(m, n=0):
    """Points per tile of the product ``X W^T`` for ``m`` rows of dimension ``n``: the
    ``(tile, m)`` block stays in the core's cache. A power of two between 32 and 1024
    (at most ``LARGE_TILE`` from ``n = LARGE_TILE_N``), a function of ``m`` and ``n``
    only (so it never changes a seeded result)."""
    tile = int(max(32, min(1024, 2 ** int(math.log2(max(1, 65536 // max(1, m)))))))
    return min(tile, LARGE_TILE) if n >= LARGE_TILE_N else tile


#: The square-frame test of :func:`every_row_kept` trusts the computed diagonal of
#: ``G^-1`` to a relative ``EVERY_ROW_MARGIN n^2 eps cond(U)`` (normwise error of the
#: inverse of a triangular factor from Householder QR of the rows, over the smallest
#: possible largest diagonal entry).
EVERY_ROW_MARGIN = 64.0


def every_row_kept(unit_rows, rank_tol2):
    """For ``n`` unit rows ``U`` in R^n: is every row farther than ``sqrt(rank_tol2)``
    from the span of all the others, so that the scan of THEORY §3 keeps every row in
    every order (each row's distance to the span of any rows before it is at least
    that)?

    The distance of row ``i`` to the span of the others is ``1 / sqrt((G^-1)_ii)`` for
    the Gram matrix ``G = U U^T = R^T R`` (``U^T = Q R``, Householder QR: the conditioning
    of ``U``, not of ``G``), so ``(G^-1)_ii`` is the squared norm of row ``i`` of
    ``R^-1`` (LAPACK ``dgeqrf`` and ``dtrtri``, ``5 n^3 / 3`` flops: far less than one
    certificate per sample). ``False`` unless that is clear of rounding (relative error
    ``EVERY_ROW_MARGIN n^2 eps cond(U)`` below 1/2, ``cond(U)^2 <= trace(G)
    trace(G^-1)``)."""
    import scipy.linalg

    n = unit_rows.shape[1]
    if unit_rows.shape[0] != n or n == 0:
        return False
    R = scipy.linalg.qr(unit_rows.T, mode="r", check_finite=False)[0]
    if not np.all(np.abs(np.diag(R)) > 0):
        return False
    inverse, info = scipy.linalg.lapack.dtrtri(R, lower=0)
    if info != 0:
        return False
    diagonal = np.einsum("ij,ij->i", inverse, inverse)  # (G^-1)_ii = |row i of R^-1|^2
    if not np.all(np.isfinite(diagonal)):
        return False
    cond = np.sqrt(np.einsum("ij,ij->", unit_rows, unit_rows) * diagonal.sum())
    relative = EVERY_ROW_MARGIN * n * n * np.finfo(np.float64).eps * cond
    return bool(relative < 0.5 and diagonal.max() * (1.0 + relative) * rank_tol2 < 1.0)


class RowGeometry:
    """The rows of ``W`` as the most-correlated-basis kernels take them, shared by the
    worker threads: ``weight_t`` (``W^T``), the bias (zero when None), ``inv_norm``,
    ``unit_rows``, ``use_gram`` and ``gram`` (:func:`normalised_rows`) and the tile of
    points per product (:func:`tile_rows`)."""

    def __init__(self, W, bias=None, use_gram=None):
        m, n = W.shape
        self.m, self.n = m, n
        self.weight_t = np.ascontiguousarray(W.T)
        self.bias = np.zeros(m) if bias is None else np.ascontiguousarray(bias)
        self.norms, self.inv_norm, self.unit_rows, self.use_gram, self.gram = normalised_rows(W, use_gram)
        self.tile = tile_rows(m, n)

    def every_row_kept(self, rank_tol2):
        """Does the scan keep every row, whatever the order, for a square ``W``? See
        :func:`every_row_kept` (computed once per tolerance)."""
        known = self.__dict__.setdefault("_every_row", {})
        if rank_tol2 not in known:
            known[rank_tol2] = self.m == self.n and every_row_kept(self.unit_rows, rank_tol2)
        return known[rank_tol2]

    def basis(self, rank_tol2):
        """The rows as the basis kernels read them, with the squared rank tolerance
        (:class:`fastrelu._core.basis.Rows`)."""
        from fastrelu._core.basis import Rows

        return Rows(unit_rows=self.unit_rows, gram=self.gram, use_gram=self.use_gram,
                    rank_tol2=float(rank_tol2))

    def scratch(self, lanes=None):
        """One thread's buffers for the basis kernels: ``(cands, scan, stats)``, the
        :class:`~fastrelu._core.basis.Candidates` of one sample (or of ``lanes`` at once:
        ``keys`` and ``index`` of shape (lanes, m)), a :class:`~fastrelu._core.basis.Scan`
        and the (3,) int64 statistics of the scan."""
        from fastrelu._core.basis import Candidates, scan_scratch

        m, n = self.m, self.n
        shape = (m,) if lanes is None else (lanes, m)
        cands = Candidates(keys=np.empty(shape), index=np.empty(shape, dtype=np.int64),
                           index_keys=np.empty(m))
        return cands, scan_scratch(m, n), np.zeros(3, dtype=np.int64)
