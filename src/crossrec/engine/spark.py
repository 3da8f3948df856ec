"""The Spark engine: the link job's heavy steps on a Spark session, equal to the local engine.

Inputs are handed to Spark as Parquet files in a work folder (never as large pandas frames),
results come back the same way and are read with pyarrow on the driver. The pitfalls that
would make Spark's answers differ from the local engine's are designed out:

- the numeric work (inner products, top-k, scoring) runs inside pandas UDFs on the same fixed
  chunks as :class:`~crossrec.engine.local.LocalEngine`, with rows sorted by id inside each
  chunk and BLAS/faiss pinned to one thread (:func:`crossrec.engine.ivf.pinned_threads`);
- row identity is the caller's row and pair numbers, never ``monotonically_increasing_id``;
- orderings spell out every tie-break, with ``NULLS LAST``;
- the identity graph is iterative min-label propagation with pointer jumping in Spark SQL,
  each round checkpointed to Parquet so the plan does not grow with the rounds (no
  GraphFrames: no jar is fetched at run time).

On a cluster ``work_dir`` must be a folder every executor reads and writes at the same path.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from crossrec.engine import ivf
from crossrec.engine.base import (
    PairScorer,
    TopK,
    check_edges,
    check_pairs,
    check_scores,
    check_topk_args,
    components_from_roots,
)
from crossrec.errors import CapacityError, InputError
from crossrec.link.graph import Components
from crossrec.spark_session import DEFAULT_MASTER, spark_session

__all__ = ["SparkEngine"]

#: Rows per Arrow batch when writing the hand-over Parquet files.
_WRITE_BATCH = 65_536
#: Label propagation stops with an error after this many rounds (pointer jumping converges in
#: about log2(diameter) rounds; this is far beyond any real identity graph).
MAX_ROUNDS = 200


def _vector_bytes(x: np.ndarray) -> pa.BinaryArray:
    """Each row of a float32 matrix as one binary value (rows × dims × 4 bytes)."""
    n, d = x.shape
    offsets = (np.arange(n + 1, dtype=np.int64) * d * 4).astype(np.int32)
    return pa.BinaryArray.from_buffers(
        pa.binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(x.tobytes())]
    )


def _matrix(values: Any, d: int) -> np.ndarray:
    """Binary vectors of a pandas column back to a float32 (rows, d) matrix."""
    return np.frombuffer(b"".join(values), dtype=np.float32).reshape(-1, d)


def _write_vectors(path: Path, x: np.ndarray) -> None:
    path.mkdir(parents=True)
    schema = pa.schema([("id", pa.int64()), ("v", pa.binary())])
    with pq.ParquetWriter(path / "part-0.parquet", schema) as writer:
        for lo in range(0, len(x), _WRITE_BATCH):
            hi = min(lo + _WRITE_BATCH, len(x))
            ids = pa.array(np.arange(lo, hi, dtype=np.int64))
            writer.write_table(pa.table([ids, _vector_bytes(x[lo:hi])], schema=schema))


def _write_table(path: Path, columns: Mapping[str, np.ndarray]) -> None:
    path.mkdir(parents=True)
    pq.write_table(pa.table(dict(columns)), path / "part-0.parquet")


class SparkEngine:
    """Runs the link job's steps on Spark (see the module docstring).

    Parameters
    ----------
    session : pyspark.sql.SparkSession, optional
        Use this session (it is not stopped by :meth:`close`). Otherwise one is made on
        ``master`` with ``conf`` (:func:`crossrec.spark_session.spark_session`).
    master, conf
        Spark master URL and settings for a session made here.
    chunk_rows : int
        Rows per fixed chunk; the same as the local engine's for equal results.
    work_dir : path, optional
        Folder for the Parquet hand-over files (a temporary folder when None); a private
        sub-folder is made in it and removed by :meth:`close`.
    """

    name = "spark"

    def __init__(
        self,
        session: Any = None,
        *,
        master: str = DEFAULT_MASTER,
        conf: Mapping[str, str] | None = None,
        chunk_rows: int = 4096,
        work_dir: str | Path | None = None,
    ) -> None:
        if chunk_rows < 1:
            raise InputError(f"chunk_rows must be >= 1, got {chunk_rows}")
        self.chunk_rows = int(chunk_rows)
        self.spark = session if session is not None else spark_session(master, conf)
        if work_dir:
            Path(work_dir).mkdir(parents=True, exist_ok=True)
        self._dir = Path(tempfile.mkdtemp(prefix="crossrec-spark-", dir=work_dir or None))
        self._names: Iterator[int] = itertools.count()

    def _path(self, name: str) -> Path:
        return self._dir / f"{next(self._names):04d}-{name}"

    def _read(self, path: Path) -> pa.Table:
        return pq.read_table(path)

    def close(self) -> None:
        """Remove the work folder (the session stays: Spark keeps one per process)."""
        shutil.rmtree(self._dir, ignore_errors=True)

    # -- candidates --------------------------------------------------------------------------
    def topk(
        self,
        queries: np.ndarray,
        base: np.ndarray,
        k: int,
        *,
        n_lists: int,
        n_probe: int,
        seed: int,
    ) -> TopK:
        from pyspark.sql import Window
        from pyspark.sql import functions as F

        check_topk_args(k, n_lists, n_probe)
        q = ivf.check_vectors(queries, "query vectors")
        x = ivf.check_vectors(base, "base vectors")
        if q.shape[1] != x.shape[1]:
            raise InputError(f"queries have {q.shape[1]} dims but the base has {x.shape[1]}")
        if len(q) == 0 or len(x) == 0:
            empty = np.zeros(0, np.int64)
            return ivf.to_matrix(empty, empty, np.zeros(0, np.float32), len(q), k)
        d, rows, kk = x.shape[1], self.chunk_rows, int(k)
        centroids = ivf.train_quantizer(x, n_lists, seed)  # once, on the driver
        qpath, bpath, out = self._path("queries"), self._path("base"), self._path("topk")
        _write_vectors(qpath, q)
        _write_vectors(bpath, x)

        def lists_of(n: int) -> Any:
            def run(pdf: Any) -> Any:
                import pandas as pd

                pdf = pdf.sort_values("id", kind="stable")
                with ivf.pinned_threads():
                    near = ivf.nearest_lists(_matrix(pdf["v"].to_numpy(), d), centroids, n)
                return pd.DataFrame(
                    {
                        "id": np.repeat(pdf["id"].to_numpy(), near.shape[1]),
                        "list": near.ravel(),
                        "v": np.repeat(pdf["v"].to_numpy(), near.shape[1]),
                    }
                )

            return run

        def search(qdf: Any, bdf: Any) -> Any:
            import pandas as pd

            with ivf.pinned_threads():
                qid, bid, score = ivf.list_topk(
                    qdf["id"].to_numpy(),
                    _matrix(qdf["v"].to_numpy(), d),
                    bdf["id"].to_numpy(),
                    _matrix(bdf["v"].to_numpy(), d),
                    kk,
                )
            return pd.DataFrame({"qid": qid, "bid": bid, "score": score})

        spark = self.spark
        schema = "id long, list int, v binary"
        chunk = F.floor(F.col("id") / rows)
        lists_path, probes_path = self._path("base-lists"), self._path("probes")
        # each base row's list; each query's probed lists, numbered in fixed chunks per list
        (
            spark.read.parquet(str(bpath))
            .groupBy(chunk)
            .applyInPandas(lists_of(1), schema)
            .write.parquet(str(lists_path))
        )
        in_list = Window.partitionBy("list").orderBy(F.col("id").asc())
        (
            spark.read.parquet(str(qpath))
            .groupBy(chunk)
            .applyInPandas(lists_of(n_probe), schema)
            .withColumn("chunk", F.floor((F.row_number().over(in_list) - 1) / rows).cast("long"))
            .write.parquet(str(probes_path))
        )
        probes = spark.read.parquet(str(probes_path))
        work = (
            spark.read.parquet(str(probes_path))
            .select(F.col("list").alias("wlist"), F.col("chunk").alias("wchunk"))
            .distinct()
        )
        base_chunks = (
            spark.read.parquet(str(lists_path))
            .join(work, F.col("list") == F.col("wlist"))
            .select("id", "list", F.col("wchunk").alias("chunk"), "v")
        )
        found = (
            probes.groupBy("list", "chunk")
            .cogroup(base_chunks.groupBy("list", "chunk"))
            .applyInPandas(search, "qid long, bid long, score float")
        )
        best = Window.partitionBy("qid").orderBy(
            F.col("score").desc_nulls_last(), F.col("bid").asc_nulls_last()
        )
        (
            found.withColumn("rank", F.row_number().over(best))
            .where(F.col("rank") <= kk)
            .select("qid", "bid", "score")
            .write.parquet(str(out))
        )
        table = self._read(out)
        return ivf.to_matrix(
            table.column("qid").to_numpy().astype(np.int64),
            table.column("bid").to_numpy().astype(np.int64),
            table.column("score").to_numpy().astype(np.float32),
            len(q),
            kk,
        )

    # -- scoring -----------------------------------------------------------------------------
    def score_pairs(
        self, a: np.ndarray, b: np.ndarray, scorer: PairScorer, *, width: int | None = None
    ) -> np.ndarray:
        from pyspark.sql import functions as F

        ra = np.asarray(a, dtype=np.int64).ravel()
        rb = np.asarray(b, dtype=np.int64).ravel()
        if ra.shape != rb.shape:
            raise InputError(f"a has {ra.size} pairs but b has {rb.size}")
        cols = ["s"] if width is None else [f"s{j}" for j in range(width)]
        if ra.size == 0:
            return np.zeros((0,) if width is None else (0, width), np.float64)
        path, out = self._path("pairs"), self._path("scores")
        _write_table(path, {"pair": np.arange(ra.size, dtype=np.int64), "a": ra, "b": rb})
        from pyspark import cloudpickle

        # The fitted matcher, shipped once per executor; cloudpickle also carries scorers
        # defined in a function or a notebook, which plain pickle (Spark's broadcast) refuses.
        shared = self.spark.sparkContext.broadcast(cloudpickle.dumps(scorer))

        def run(pdf: Any) -> Any:
            import pandas as pd
            from pyspark import cloudpickle

            pdf = pdf.sort_values("pair", kind="stable")
            with ivf.pinned_threads():
                got = cloudpickle.loads(shared.value)(pdf["a"].to_numpy(), pdf["b"].to_numpy())
            values = check_scores(got, len(pdf), width).reshape(len(pdf), -1)
            frame = pd.DataFrame(values, columns=cols)
            frame.insert(0, "pair", pdf["pair"].to_numpy())
            return frame

        schema = "pair long, " + ", ".join(f"{c} double" for c in cols)
        try:
            (
                self.spark.read.parquet(str(path))
                .groupBy(F.floor(F.col("pair") / self.chunk_rows))
                .applyInPandas(run, schema)
                .write.parquet(str(out))
            )
        finally:
            shared.unpersist()
        table = self._read(out)
        order = np.argsort(table.column("pair").to_numpy(), kind="stable")
        values = np.column_stack([table.column(c).to_numpy() for c in cols])[order]
        return values[:, 0].astype(np.float64) if width is None else values.astype(np.float64)

    # -- assignment --------------------------------------------------------------------------
    def one_to_one(
        self,
        a: np.ndarray,
        b: np.ndarray,
        prob: np.ndarray,
        code_a: np.ndarray,
        code_b: np.ndarray,
    ) -> np.ndarray:
        ra, rb, s, ca, cb = check_pairs(a, b, prob, code_a, code_b)
        keep = np.zeros(ra.size, dtype=bool)
        if ra.size == 0:
            return keep
        path, out = self._path("assign-in"), self._path("assign")
        # s + 0.0 turns -0.0 into 0.0: numpy's == and Spark's ordering then agree on ties.
        _write_table(
            path,
            {
                "edge": np.arange(ra.size, dtype=np.int64),
                "a": ra,
                "b": rb,
                "s": s + 0.0,
                "ca": ca,
                "cb": cb,
            },
        )
        self.spark.read.parquet(str(path)).createOrReplaceTempView("crossrec_pairs")
        # Each pair competes at both ends, in the group (account, partner's platform); the
        # best is the highest score, then the smaller partner row, then the smaller pair
        # number; a pair keeps when it is best at both ends.
        self.spark.sql(
            """
            WITH ends AS (
                SELECT edge, a AS node, cb AS pcode, b AS partner, s FROM crossrec_pairs
                UNION ALL
                SELECT edge, b AS node, ca AS pcode, a AS partner, s FROM crossrec_pairs
            ), ranked AS (
                SELECT edge, ROW_NUMBER() OVER (
                    PARTITION BY node, pcode
                    ORDER BY s DESC NULLS LAST, partner ASC NULLS LAST, edge ASC NULLS LAST
                ) AS rn
                FROM ends
            )
            SELECT edge FROM ranked WHERE rn = 1 GROUP BY edge HAVING COUNT(*) = 2
            """
        ).write.parquet(str(out))
        self.spark.catalog.dropTempView("crossrec_pairs")
        keep[self._read(out).column("edge").to_numpy()] = True
        return keep

    # -- identity graph ----------------------------------------------------------------------
    def components(self, n: int, a: np.ndarray, b: np.ndarray, max_size: int) -> Components:
        ea, eb = check_edges(n, a, b, max_size)
        root = np.arange(n, dtype=np.int64)
        linked = ea != eb
        if linked.any():
            nodes, labels = self._min_labels(ea[linked], eb[linked])
            root[nodes] = labels
        return components_from_roots(root, max_size)

    def _min_labels(self, ea: np.ndarray, eb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Smallest connected row of every row with an edge, by label propagation."""
        spark = self.spark
        path = self._path("edges")
        _write_table(path, {"src": np.r_[ea, eb], "dst": np.r_[eb, ea]})
        spark.read.parquet(str(path)).distinct().createOrReplaceTempView("crossrec_edges")
        labels = spark.sql(
            "SELECT src AS node, LEAST(src, MIN(dst)) AS label FROM crossrec_edges GROUP BY src"
        )
        try:
            for _ in range(MAX_ROUNDS):
                labels.createOrReplaceTempView("crossrec_labels")
                # a row takes its neighbours' smallest label, then the label of its label
                # (pointer jumping); labels only fall and stay inside the component
                step = spark.sql(
                    """
                    WITH spread AS (
                        SELECT l.node, LEAST(l.label, MIN(n.label)) AS label, l.label AS old
                        FROM crossrec_labels l
                        JOIN crossrec_edges e ON e.src = l.node
                        JOIN crossrec_labels n ON n.node = e.dst
                        GROUP BY l.node, l.label
                    )
                    SELECT s.node, LEAST(s.label, j.label) AS label,
                           LEAST(s.label, j.label) <> s.old AS changed
                    FROM spread s JOIN spread j ON j.node = s.label
                    """
                )
                out = self._path("labels")
                step.write.parquet(str(out))  # the round's checkpoint
                labels = spark.read.parquet(str(out)).select("node", "label", "changed")
                if labels.where("changed").limit(1).count() == 0:
                    table = self._read(out)
                    return (
                        table.column("node").to_numpy().astype(np.int64),
                        table.column("label").to_numpy().astype(np.int64),
                    )
                labels = labels.select("node", "label")
        finally:
            spark.catalog.dropTempView("crossrec_edges")
            spark.catalog.dropTempView("crossrec_labels")
        raise CapacityError(
            f"the identity graph did not settle in {MAX_ROUNDS} rounds of label propagation",
            hint="lower link.max_component_size or check for a very long chain of links",
        )
