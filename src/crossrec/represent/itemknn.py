"""Item-to-item neighbours of one platform (implicit's BM25 item-kNN).

The similarity of two items is implicit's ``BM25Recommender`` weighting of the accounts that
consumed both, keeping each item's ``K`` nearest items. An account's scores over the catalogue
are its interaction row times the similarity matrix ("items like the ones you had"; see
``crossrec.recommend.components``). On small,
sparse catalogues this is often stronger than matrix factorisation, and it needs no user
factors, so new events count at once.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp

from crossrec.errors import ModelError

FILE = "item_knn.npz"
#: Neighbours kept per item.
K = 100


def fit_item_knn(matrix: sp.csr_matrix, *, k: int = K, num_threads: int = 1) -> sp.csr_matrix:
    """The ``(n_items, n_items)`` float32 similarity matrix (row ``i``: ``i``'s neighbours).

    Parameters
    ----------
    matrix : scipy.sparse.csr_matrix, shape (n_accounts, n_items)
        Interaction confidences of one platform.
    k : int
        Neighbours kept per item.
    """
    import warnings

    from implicit.nearest_neighbours import BM25Recommender

    model = BM25Recommender(K=k, num_threads=num_threads)
    with warnings.catch_warnings():  # implicit notes its own internal COO->CSR conversion
        warnings.simplefilter("ignore")
        model.fit(sp.csr_matrix(matrix, dtype=np.float32), show_progress=False)
    return sp.csr_matrix(model.similarity, dtype=np.float32)


def save_item_knn(similarity: sp.csr_matrix, directory: Path) -> None:
    m = sp.csr_matrix(similarity)
    np.savez(
        directory / FILE, data=m.data, indices=m.indices, indptr=m.indptr, shape=np.array(m.shape)
    )


def load_item_knn(directory: Path) -> sp.csr_matrix | None:
    """The saved similarity matrix, or None when the model has none."""
    path = directory / FILE
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return sp.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=tuple(z["shape"]))
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"{path}: cannot read the item neighbours: {exc}") from None
