"""Implicit ALS fitted on Spark (``[train] cf_engine = "spark"``), for platforms too large for
one process. The factors land in the same :class:`~crossrec.represent.cf.CFModel` (and so in
the same saved files) as the in-process fit.

The two objectives and how the settings map
-------------------------------------------
implicit (Hu, Koren & Volinsky 2008, as implicit 0.7 implements it) minimises::

    Σ_(u,i) c_ui (p_ui − x_u·y_i)² + λ (Σ_u ‖x_u‖² + Σ_i ‖y_i‖²)

with ``c_ui`` the matrix value (crossrec's confidence, see
:mod:`crossrec.represent.interactions`) where the account has events and 1 elsewhere,
``p_ui = 1`` where it has events, and one ``λ`` (``[train] regularization``) for every row.

``pyspark.ml.recommendation.ALS(implicitPrefs=True)`` minimises the same sum with
``c_ui = 1 + α·r_ui`` and a weighted penalty (ALS-WR, Zhou et al. 2008)::

    λ_s (Σ_u n_u ‖x_u‖² + Σ_i n_i ‖y_i‖²)

where ``n_u``, ``n_i`` count the account's and the item's entries. crossrec hands Spark
``r_ui = c_ui − 1`` with ``α = 1``, so the confidences are equal (a confidence below 1, which
implicit would weigh below an unobserved cell, is clipped to ``r = 1e-6``: Spark reads
``r <= 0`` as a negative preference). The penalties cannot be equal for every row; crossrec
sets ``λ_s = λ / (nnz / n_accounts)``, so an account with the average number of items is
regularised exactly as implicit would, busier accounts more and quieter ones less.
``factors``, ``cf_iterations`` and ``seed`` map to ``rank``, ``maxIter`` and ``seed``.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse as sp

from crossrec.errors import ModelError
from crossrec.spark_session import DEFAULT_MASTER, spark_session

__all__ = ["fit_als_spark", "spark_reg_param"]

#: Spark reads ratings <= 0 as negative preferences: confidences below 1 keep a tiny positive r.
_MIN_RATING = 1e-6


def spark_reg_param(matrix: sp.csr_matrix, regularization: float) -> float:
    """Spark's ``regParam`` giving an account with the mean item count implicit's ``λ``."""
    mean_count = matrix.nnz / max(matrix.shape[0], 1)
    return float(regularization) / max(mean_count, 1.0)


def fit_als_spark(
    matrix: sp.csr_matrix,
    *,
    factors: int,
    iterations: int,
    regularization: float,
    seed: int,
    master: str = DEFAULT_MASTER,
    conf: Mapping[str, str] | None = None,
    session: Any = None,
    work_dir: str | Path | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Fit implicit ALS on Spark; the user and item factors as float32 arrays.

    Parameters
    ----------
    matrix : scipy.sparse.csr_matrix, shape (n_accounts, n_items)
        Confidences, as for :meth:`crossrec.represent.cf.CFModel.fit`.
    factors, iterations, regularization, seed
        ``[train]`` settings, mapped as the module docstring says.
    master, conf, session
        The Spark session to fit on (an active one is reused).
    work_dir : path, optional
        Folder for the Parquet hand-over (a temporary folder when None).

    Returns
    -------
    user_factors : (n_accounts, factors) float32
    item_factors : (n_items, factors) float32
        Rows Spark returns no factors for (no entries) are zeros.
    """
    from pyspark.ml.recommendation import ALS

    spark = session if session is not None else spark_session(master, conf)
    coo = matrix.tocoo()
    rating = np.maximum(coo.data.astype(np.float64) - 1.0, _MIN_RATING).astype(np.float32)
    folder = Path(tempfile.mkdtemp(prefix="crossrec-als-", dir=work_dir or None))
    try:
        pq.write_table(
            pa.table(
                {
                    "user": coo.row.astype(np.int32),
                    "item": coo.col.astype(np.int32),
                    "rating": rating,
                }
            ),
            folder / "ratings.parquet",
        )
        als = ALS(
            rank=int(factors),
            maxIter=int(iterations),
            regParam=spark_reg_param(matrix, regularization),
            alpha=1.0,
            implicitPrefs=True,
            userCol="user",
            itemCol="item",
            ratingCol="rating",
            seed=int(seed),
            nonnegative=False,
            coldStartStrategy="nan",
        )
        try:
            model = als.fit(spark.read.parquet(str(folder / "ratings.parquet")))
            model.userFactors.write.parquet(str(folder / "users"))
            model.itemFactors.write.parquet(str(folder / "items"))
        except Exception as exc:  # py4j errors share no useful base class
            raise ModelError(
                f"Spark ALS failed: {str(exc).splitlines()[0] if str(exc) else exc}",
                hint="check the [spark] settings (driver memory), or use cf_engine = 'implicit'",
            ) from exc
        users = _factors(folder / "users", matrix.shape[0], factors)
        items = _factors(folder / "items", matrix.shape[1], factors)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return users, items


def _factors(path: Path, n: int, dim: int) -> np.ndarray:
    table = pq.read_table(path)
    out = np.zeros((n, dim), np.float32)
    ids = table.column("id").to_numpy()
    features = table.column("features").combine_chunks()
    values = features.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
    out[ids] = values.reshape(len(ids), dim)
    return out
