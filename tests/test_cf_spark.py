"""ALS fitted on Spark (``[train] cf_engine = "spark"``): the same model contract and files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from crossrec.config import Config, TrainConfig
from crossrec.errors import ConfigError, InputError
from crossrec.represent.cf import CFModel
from crossrec.represent.cf_spark import spark_reg_param
from crossrec.represent.interactions import build_interactions
from tests.test_cf import checkerboard

pytestmark = pytest.mark.spark


def test_spark_als_recommends_the_held_out_checkerboard_item(spark) -> None:
    matrix = checkerboard()
    model = CFModel("als", factors=2, iterations=5, regularization=0.01, engine="spark").fit(matrix)
    assert model.user_factors.shape == (50, 2) and model.user_factors.dtype == np.float32
    for account in range(matrix.shape[0]):
        items, _ = model.recommend(account, k=5)
        assert items[0] == account
        assert not set(items) & set(matrix[account].indices)


def test_spark_als_saves_the_files_implicit_saves(spark, tmp_path: Path) -> None:
    matrix = checkerboard(20)
    CFModel("als", factors=4, iterations=3, engine="spark").fit(matrix).save(tmp_path / "s")
    CFModel("als", factors=4, iterations=3).fit(matrix).save(tmp_path / "i")
    names = sorted(p.name for p in (tmp_path / "s").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "i").iterdir())
    meta_s = json.loads((tmp_path / "s" / "cf.json").read_text())
    meta_i = json.loads((tmp_path / "i" / "cf.json").read_text())
    assert meta_s == meta_i  # same format, kind and settings: readers cannot tell them apart
    loaded = CFModel.load(tmp_path / "s")
    vector = loaded.fold_in(np.array([0, 2, 4]), np.array([2.0, 2.0, 2.0]))
    items, _ = loaded.recommend(vector, k=3, seen=np.array([0, 2, 4]))
    assert set(items.tolist()) <= set(range(0, 20, 2))  # folded in among the even block


def test_cf_engine_spark_end_to_end_on_a_tiny_store(spark, tmp_path: Path) -> None:
    from crossrec.workspace import Workspace

    rows = ["account,item,event,value"]
    dense = checkerboard(30).toarray()
    for account, item in zip(*np.nonzero(dense), strict=True):
        rows.append(f"u{account:02d},i{item:02d},rating,{1 + (account + item) % 5}")
    csv = tmp_path / "events.csv"
    csv.write_text("\n".join(rows) + "\n")
    ws = Workspace.init(tmp_path / "ws")
    try:
        ws.ingest_events("shop", csv)
        columns = ["platform", "account", "item", "event_type", "value", "ts", "seq"]
        events = ws.store.read("events", columns=columns, order_by=["seq"])
    finally:
        ws.close()
    cfg = Config.from_dict(
        {"train": {"cf_engine": "spark", "factors": 2, "cf_iterations": 5, "regularization": 0.01}}
    )
    inter = build_interactions(events, cfg.train)
    model = CFModel.from_config(cfg.train, spark_conf=cfg.spark).fit(inter.matrix)
    assert model.engine == "spark"
    # every account's best unseen item is in its own block (the block is the known answer;
    # account ids are pseudonyms now, item ids are not)
    parity = np.array([int(str(item)[1:]) % 2 for item in inter.items.tolist()])
    for row in range(inter.matrix.shape[0]):
        block = set(parity[inter.matrix[row].indices].tolist())
        items, _ = model.recommend(row, k=1)
        assert block == {parity[items[0]]}


def test_regularisation_is_scaled_by_the_mean_count() -> None:
    matrix = checkerboard(20)  # 9 or 10 items per account
    assert spark_reg_param(matrix, 0.05) == pytest.approx(0.05 / (matrix.nnz / 20))


def test_spark_fits_als_only() -> None:
    with pytest.raises(ConfigError, match="ALS only"):
        Config.from_dict({"train": {"cf_engine": "spark", "cf_model": "bpr"}})
    with pytest.raises(InputError, match="ALS only"):
        CFModel("bpr", engine="spark")
    assert TrainConfig().cf_engine == "implicit"
