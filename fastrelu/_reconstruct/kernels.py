"""Most correlated bases among the active rows of layer outputs (for ``method="basis"``).

For an output ``y`` the active rows are ``{i : active[i]}`` and ``<x, w_i> = y_i + alpha_i``
there, so the normalised correlations ``(y_i + alpha_i) / |w_i|`` of the unknown input are
known on them: the basis is THEORY §3's most correlated basis restricted to the active
rows (greedy by decreasing normalised correlation, ties by index, ``rank_tol`` on the
unit rows).
"""

from fastrelu._core.basis import basis_of_active
from fastrelu._core.jit import kernel


@kernel
def basis_rows(C, active, inv_norm, basis, rows_out, count_out, cands, scan, stats):
    """Basis rows ``rows_out[s, :count_out[s]]`` for each sample ``s`` of a tile.

    ``C`` (t, m): ``y + alpha``; ``active`` (t, m) bool; ``inv_norm`` (m,) ``1 / |w_i|``;
    ``basis``: :class:`fastrelu._core.basis.Rows`; ``cands``:
    :class:`fastrelu._core.basis.Candidates` of one sample (``keys``, ``index`` and
    ``index_keys`` of shape (m,)); ``scan``: :class:`fastrelu._core.basis.Scan`;
    ``stats`` (3,) int64 scratch.
    """
    keys, cand, cand_keys = cands.keys, cands.index, cands.index_keys
    n = rows_out.shape[1]
    m = C.shape[1]
    for s in range(C.shape[0]):
        size = 0
        for i in range(m):
            key = C[s, i] * inv_norm[i]
            keys[i] = key
            cand[size] = i
            cand_keys[size] = key
            size += active[s, i]
        count = basis_of_active(keys, cand, cand_keys, size, n, basis, scan, stats)
        for j in range(count):
            rows_out[s, j] = scan.kept[j]
        count_out[s] = count
