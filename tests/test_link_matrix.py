"""A reduced robustness matrix, end to end as a user runs it: MovieLens as two platforms (the
second without time, 15 % known links, 40 % of persons without a partner) and as three
platforms (ratings with time; a 10-point scale without time; implicit watch events on a clock
shifted by whole days, titles without the year). Each cell: `datasets`, `init`, `ingest`,
`ingest-links`, `train`, `link`, `evaluate link` (bench/link_matrix.py, ~4 minutes a cell on an
idle 2-core machine).

With ``CROSSREC_MATRIX_CACHE`` set to the matrix's cache folder (``bench/out/matrix``), cells
trained there are only linked and evaluated again (as ``bench/link_matrix.py --relink``) and
missing ones are built there: a check of the linker in a minute or two."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from crossrec.datasets.movielens import default_path

ROOT = Path(__file__).resolve().parent.parent
CELLS = ("ml-base", "ml3")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (default_path() / "ratings.csv").is_file(), reason="MovieLens data not found"
    ),
]


def _harness() -> Any:
    spec = importlib.util.spec_from_file_location("link_matrix", ROOT / "bench" / "link_matrix.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["link_matrix"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    lm = _harness()
    given = os.environ.get("CROSSREC_MATRIX_CACHE")
    cache = Path(given) if given else tmp_path_factory.mktemp("matrix")
    out: dict[str, dict[str, Any]] = {}
    for name in CELLS:
        cell = lm.CELL_BY_NAME[name]
        try:
            if not (cache / name / "trained.json").is_file():
                lm.build_cell(cell, cache, 200)
        except lm.CellError as exc:
            out[name] = {"error": str(exc)}
            continue
        out[name] = lm.evaluate_cell(cell, cache)
    return out


@pytest.mark.parametrize("cell", CELLS)
def test_cell_links_and_ranks_at_least_as_well_as_its_baselines(
    matrix: dict[str, dict[str, Any]], cell: str
) -> None:
    row = matrix[cell]
    assert "error" not in row, row.get("error")
    assert row["mrr"] >= row["best_baseline_mrr"], (row["mrr"], row["baselines"])
    for pair, figures in row.get("pairs", {}).items():
        assert figures["mrr_ge_best_baseline"], (pair, figures)


@pytest.mark.parametrize("cell", CELLS)
def test_cell_asserts_precisely_or_nothing(matrix: dict[str, dict[str, Any]], cell: str) -> None:
    row = matrix[cell]
    assert "error" not in row, row.get("error")
    assert not row["n_predicted"] or row["precision"] >= 0.9, (
        row["precision"],
        row["n_predicted"],
    )


def test_three_platforms_give_every_person_one_account_per_platform(
    matrix: dict[str, dict[str, Any]],
) -> None:
    row = matrix["ml3"]
    assert "error" not in row, row.get("error")
    assert set(row["platforms"]) == {"cinema", "stream", "watch"}
    assert len(row["pairs"]) == 3  # every platform pair evaluated on its own
    assert row["persons_with_two_accounts_on_one_platform"] == 0
