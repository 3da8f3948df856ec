"""Engines for the batch link job's heavy steps: in process (default) or on Apache Spark.

:func:`make_engine` picks one from the ``[engine]`` and ``[spark]`` settings. pyspark is
imported only by the Spark engine, when one is made.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from crossrec.config import Config
    from crossrec.engine.base import Engine

__all__ = ["make_engine"]


def make_engine(config: Config, *, master: str | None = None, session: Any = None) -> Engine:
    """The engine ``config.engine.kind`` names.

    Parameters
    ----------
    config : Config
        ``[engine]`` (kind, master, chunk_rows, work_dir) and ``[spark]`` (Spark conf).
    master : str, optional
        Spark master URL over ``[engine] master`` (``crossrec link --master``).
    session : pyspark.sql.SparkSession, optional
        An existing session for the Spark engine to use.
    """
    cfg = config.engine
    if cfg.kind == "spark":
        from crossrec.engine.spark import SparkEngine

        return SparkEngine(
            session,
            master=master or cfg.master,
            conf=config.spark,
            chunk_rows=cfg.chunk_rows,
            work_dir=Path(cfg.work_dir) if cfg.work_dir else None,
        )
    from crossrec.engine.local import LocalEngine

    return LocalEngine(cfg.chunk_rows)
