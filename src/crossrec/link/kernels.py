"""Per-pair kernels: one loop over the pairs, no (pairs, dim) temporaries.

The signals of a candidate pair compare two rows of a profile matrix. Gathering both sides of
every pair first (``x[a]``, ``y[b]``: two (pairs, dim) copies) costs more than the arithmetic;
these kernels read the rows in place, one pair at a time, on every core (numba ``prange``;
each pair is computed by one thread, so the results do not depend on the thread count).

- :func:`pair_dot`: ``x[ia[i]] · y[ib[i]]`` of dense rows (accumulated in float64, in SIMD
  lanes);
- :func:`sparse_pair_dot`: the same for CSR rows with sorted column indices, summed in column
  order in the matrices' dtype (within float32 rounding of
  ``x[ia].multiply(y[ib]).sum(axis=1)``; integer-valued sums are equal);
- :func:`group_z`: each value's z-score within its group, two passes over the values in
  order (the same float64 sums as ``np.bincount``, so the same numbers).

numba is imported on first use, so importing this module (and ``crossrec``) stays cheap; the
compiled code is cached on disk beside the module.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np
import scipy.sparse as sp


@cache
def _compiled() -> dict[str, Callable[..., Any]]:
    import numba

    # fastmath lets LLVM vectorise the sum (it may reorder the additions): the same compiled
    # order on every run and thread count, within float32 rounding of a sequential sum
    @numba.njit(parallel=True, cache=True, fastmath=True)
    def dense(x: Any, ia: Any, y: Any, ib: Any, out: Any) -> None:  # pragma: no cover - jit
        d = x.shape[1]
        for i in numba.prange(len(ia)):
            r, s = ia[i], ib[i]
            acc = 0.0
            for j in range(d):
                acc += np.float64(x[r, j]) * np.float64(y[s, j])
            out[i] = acc

    @numba.njit(parallel=True, cache=True)
    def sparse(
        xp: Any, xi: Any, xd: Any, ia: Any, yp: Any, yi: Any, yd: Any, ib: Any, out: Any
    ) -> None:  # pragma: no cover - jit
        for i in numba.prange(len(ia)):
            p, p_end = xp[ia[i]], xp[ia[i] + 1]
            q, q_end = yp[ib[i]], yp[ib[i] + 1]
            acc = out[i]  # zero, in the matrices' dtype
            while p < p_end and q < q_end:
                cx, cy = xi[p], yi[q]
                if cx == cy:
                    acc += xd[p] * yd[q]
                    p += 1
                    q += 1
                elif cx < cy:
                    p += 1
                else:
                    q += 1
            out[i] = acc

    @numba.njit(cache=True)
    def z(groups: Any, n_groups: int, values: Any, out: Any) -> None:  # pragma: no cover - jit
        count = np.zeros(n_groups, np.float64)
        total = np.zeros(n_groups, np.float64)
        square = np.zeros(n_groups, np.float64)
        for i in range(len(values)):  # in order, as np.bincount adds
            v = np.float64(values[i])
            if v == v:
                g = groups[i]
                count[g] += 1.0
                total[g] += v
                square[g] += v * v
        for g in range(n_groups):
            n = max(count[g], 1.0)
            mean = total[g] / n
            var = square[g] / n - mean**2
            total[g] = mean
            square[g] = np.sqrt(max(var, 0.0))
        for i in range(len(values)):
            v = np.float64(values[i])
            if v == v:
                g = groups[i]
                std = square[g]
                out[i] = (v - total[g]) / max(std, 1e-9) if std > 1e-9 else 0.0
            else:
                out[i] = np.nan

    return {"dense": dense, "sparse": sparse, "z": z}


def pair_dot(x: np.ndarray, ia: np.ndarray, y: np.ndarray, ib: np.ndarray) -> np.ndarray:
    """Dot products of row pairs of two dense matrices.

    Parameters
    ----------
    x : np.ndarray, shape (n_x, d)
    ia : np.ndarray, shape (m,), int
        Rows of ``x``.
    y : np.ndarray, shape (n_y, d)
    ib : np.ndarray, shape (m,), int
        Rows of ``y``.

    Returns
    -------
    np.ndarray, shape (m,), float32
        ``x[ia[i]] · y[ib[i]]``, accumulated in float64 (so within float32 rounding of
        ``np.einsum("ij,ij->i", x[ia], y[ib])``, which sums in float32).
    """
    x = _dense(x)
    y = _dense(y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"row widths differ: {x.shape[1]} and {y.shape[1]}")
    ia, ib = _rows(ia), _rows(ib)
    out = np.empty(len(ia), np.float64)
    if len(ia):
        _compiled()["dense"](x, ia, y, ib, out)
    return out.astype(np.float32)


def sparse_pair_dot(
    x: sp.csr_matrix, ia: np.ndarray, y: sp.csr_matrix, ib: np.ndarray
) -> np.ndarray:
    """Dot products of row pairs of two CSR matrices with the same columns.

    Returns
    -------
    np.ndarray, shape (m,), float64
        ``x[ia[i]] · y[ib[i]]``: the products of equal columns summed in column order in the
        matrices' dtype, as ``x[ia].multiply(y[ib]).sum(axis=1)`` does (equal to it).
    """
    x, y = _csr(x), _csr(y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"column counts differ: {x.shape[1]} and {y.shape[1]}")
    dtype = np.result_type(x.dtype, y.dtype)
    ia, ib = _rows(ia), _rows(ib)
    out = np.zeros(len(ia), dtype)
    if len(ia) and x.nnz and y.nnz:
        _compiled()["sparse"](
            x.indptr.astype(np.int64),
            x.indices,
            x.data.astype(dtype, copy=False),
            ia,
            y.indptr.astype(np.int64),
            y.indices,
            y.data.astype(dtype, copy=False),
            ib,
            out,
        )
    return out.astype(np.float64)


def group_z(groups: np.ndarray, n_groups: int, values: np.ndarray) -> np.ndarray:
    """z-score of each value within its group (NaN stays NaN; a lone value, or a group whose
    values are all equal, gets 0).

    Parameters
    ----------
    groups : np.ndarray, shape (n,), int in [0, n_groups)
    n_groups : int
    values : np.ndarray, shape (n,), float

    Returns
    -------
    np.ndarray, shape (n,), float32
        Computed in float64: ``(v - mean) / std`` with the group's population std.
    """
    out = np.empty(len(values), np.float32)
    if len(values):
        _compiled()["z"](_rows(groups), int(n_groups), np.ascontiguousarray(values), out)
    return out


def _dense(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float32)
    return np.ascontiguousarray(x)


def _rows(rows: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rows, dtype=np.int64)


def _csr(m: sp.csr_matrix) -> sp.csr_matrix:
    m = sp.csr_matrix(m)
    if not m.has_sorted_indices:
        m = m.sorted_indices()
    return m
