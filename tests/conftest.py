from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
MOVIELENS = DATA / "movielens-ml-latest-small"
DOUBAN = DATA / "douban-gadtcdr-book-music"


@pytest.fixture
def ws(tmp_path: Path):
    from crossrec.workspace import Workspace

    workspace = Workspace.init(tmp_path / "ws")
    yield workspace
    workspace.close()


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def spark():
    """One local[2] Spark session for the whole test run (start-up takes seconds)."""
    from crossrec.spark_session import java_problem, spark_session

    problem = java_problem()
    if problem is not None:
        pytest.skip(f"Spark tests need Java 17: {problem}")
    session = spark_session(
        "local[2]",
        {
            "spark.sql.shuffle.partitions": "2",
            "spark.default.parallelism": "2",
            "spark.ui.enabled": "false",
            "spark.driver.memory": "2g",
        },
        app_name="crossrec-tests",
    )
    yield session
    session.stop()
