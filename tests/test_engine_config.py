"""The [engine] and [spark] settings: validated at start-up, chosen in one place."""

from __future__ import annotations

import tomllib

import pytest

from crossrec.config import DEFAULT_CONFIG_TOML, Config
from crossrec.engine import make_engine
from crossrec.engine.local import LocalEngine
from crossrec.errors import ConfigError


def test_defaults_run_the_local_engine() -> None:
    config = Config.from_dict(tomllib.loads(DEFAULT_CONFIG_TOML))
    assert config.engine.kind == "local" and config.spark == {}
    engine = make_engine(config)
    assert isinstance(engine, LocalEngine) and engine.chunk_rows == 4096


def test_spark_settings_are_flattened_to_spark_conf_keys() -> None:
    text = """
    [engine]
    kind = "spark"
    master = "spark://head:7077"

    [spark]
    spark.driver.memory = "4g"
    "spark.sql.shuffle.partitions" = 400
    spark.ui.enabled = false
    """
    config = Config.from_dict(tomllib.loads(text))
    assert config.engine.master == "spark://head:7077"
    assert config.spark == {
        "spark.driver.memory": "4g",
        "spark.sql.shuffle.partitions": "400",
        "spark.ui.enabled": "false",
    }


def test_bad_engine_settings_are_all_reported_at_once() -> None:
    with pytest.raises(ConfigError) as err:
        Config.from_dict(
            {"engine": {"kind": "dask", "chunk_rows": 0}, "spark": {"driver": {"memory": "2g"}}}
        )
    message = str(err.value)
    assert "engine.kind" in message and "engine.chunk_rows" in message
    assert "driver.memory" in message and "spark." in message
