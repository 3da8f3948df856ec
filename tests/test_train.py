"""crossrec train end to end on a small synthetic world: versions, cache, profiles, determinism."""

from __future__ import annotations

import json

import numpy as np
import pytest

from crossrec.datasets.synthetic import SyntheticConfig, generate_synthetic
from crossrec.models import ModelRegistry
from crossrec.represent.profiles import AccountProfiles
from crossrec.train import train


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    generate_synthetic(
        out, SyntheticConfig(accounts=240, events=4800, platforms=2, format="csv", seed=7)
    )
    return out


def _workspace(root, world):
    from crossrec.workspace import Workspace

    ws = Workspace.init(root)
    cfg = ws.root / "crossrec.toml"
    text = cfg.read_text()
    text = text.replace('encoder = "minilm"', 'encoder = "static"')
    text = text.replace("epochs = 20", "epochs = 2").replace("dim = 64", "dim = 16")
    text = text.replace("cf_iterations = 15", "cf_iterations = 3")
    cfg.write_text(text)
    ws = Workspace(root)
    for platform in ("video", "music"):
        ws.ingest_events(
            platform, world / platform / "events.csv", items=world / platform / "items.csv"
        )
    ws.ingest_links(world / "known_links.csv")
    return ws


def test_train_publishes_a_complete_version(tmp_path, world):
    ws = _workspace(tmp_path / "ws", world)
    meta = train(ws)
    registry = ModelRegistry(ws.models_dir)
    assert registry.current() == meta["version"] == "v0001"
    path = registry.path()
    for part in ("accounts", "cf/video", "cf/music", "sequence", "text", "index/sequence/music"):
        assert (path / part).is_dir(), part
    assert json.loads((path / "metadata.json").read_text())["data"]["events"] == 4800
    profiles = AccountProfiles.load(path / "accounts")
    assert len(profiles) == 240
    assert profiles.has_text.all() and profiles.has_rhythm.all()
    np.testing.assert_allclose(np.linalg.norm(profiles.sequence, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(profiles.rhythm.sum(axis=1), 1.0, atol=1e-5)
    assert all(profiles.top_categories)
    # no pickles anywhere in the version
    for f in path.rglob("*"):
        if f.suffix in (".npy", ".npz"):
            np.load(f, allow_pickle=False)
        assert f.suffix not in (".pkl", ".pickle", ".pt")

    # a second train encodes no text that did not change, and becomes current
    meta2 = train(ws)
    assert meta2["metrics"]["text"]["encoded"] == 0
    assert meta2["metrics"]["text"]["cached"] > 0
    assert registry.current() == "v0002"
    assert [m["version"] for m in registry.list()] == ["v0001", "v0002"]
    # same inputs and seed, same vectors
    again = AccountProfiles.load(registry.path("v0002") / "accounts")
    np.testing.assert_array_equal(again.cf, profiles.cf)
    # torch's multi-threaded CPU kernels may sum in another order: equal to float precision
    np.testing.assert_allclose(again.sequence, profiles.sequence, atol=1e-5)
    ws.close()


def test_train_without_events_says_what_to_do(ws):
    from crossrec.errors import ModelError

    with pytest.raises(ModelError, match="crossrec ingest"):
        train(ws)
