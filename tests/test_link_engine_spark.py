"""`crossrec link --engine spark` writes the same links as the local engine."""

from __future__ import annotations

import pytest

from crossrec.datasets.synthetic import SyntheticConfig, generate_synthetic
from crossrec.link.pipeline import run_link
from tests.worlds import build_workspace

pytestmark = pytest.mark.spark


def test_spark_engine_writes_the_same_links_and_persons(spark, tmp_path_factory):
    world = tmp_path_factory.mktemp("world")
    generate_synthetic(
        world, SyntheticConfig(accounts=200, events=6000, platforms=2, format="csv", seed=4)
    )
    ws = build_workspace(world, tmp_path_factory.mktemp("ws") / "ws", ("video", "music"))
    try:
        local = run_link(ws, engine="local")
        local_persons = ws.store.read("persons", order_by=["platform", "account"]).to_pylist()
        on_spark = run_link(ws, engine="spark")
        spark_persons = ws.store.read("persons", order_by=["platform", "account"]).to_pylist()
    finally:
        ws.close()
    assert local["engine"] == "local" and on_spark["engine"] == "spark"
    assert on_spark["links_sha256"] == local["links_sha256"]
    assert on_spark["asserted_links"] == local["asserted_links"]
    assert spark_persons == local_persons
