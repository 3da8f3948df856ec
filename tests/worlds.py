"""Small trained workspaces shared by the recommendation and service tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from crossrec.config import PrivacyConfig
from crossrec.datasets.holdout import build_holdout
from crossrec.datasets.synthetic import SyntheticConfig, generate_synthetic
from crossrec.link.pipeline import run_link
from crossrec.train import train
from crossrec.workspace import Workspace


def fast_config(root: Path, *, encoder: str = "static") -> None:
    """A workspace configuration that trains in seconds (static encoder, two epochs)."""
    cfg = root / "crossrec.toml"
    text = cfg.read_text().replace('encoder = "minilm"', f'encoder = "{encoder}"')
    text = text.replace("epochs = 20", "epochs = 2")
    # a small world: settle for a lower precision so that links are asserted at all
    cfg.write_text(text.replace("link_precision = 0.95", "link_precision = 0.6"))


#: The worlds' pseudonymisation key. Accounts are ordered by their pseudonyms, so a random
#: key per run gave another model, and near a threshold another set of links, on each run.
WORLD_KEY = "5f0c2a7e9b1d4c3a8e6f7b2d1c0a9e8f7d6c5b4a3928171605f4e3d2c1b0a998"


def build_workspace(world: Path, root: Path, platforms: tuple[str, ...]) -> Workspace:
    """Ingest a generated or split world's platforms and known links, and train (with the
    fixed :data:`WORLD_KEY`: the same model on every run)."""
    root.mkdir(parents=True, exist_ok=True)
    key = root / PrivacyConfig().key_file  # Workspace.init keeps a key file it finds
    key.write_text(WORLD_KEY + "\n")
    key.chmod(0o600)
    Workspace.init(root).close()
    fast_config(root)
    ws = Workspace(root)
    for platform in platforms:
        items = world / platform / "items.csv"
        ws.ingest_events(
            platform, world / platform / "events.csv", items=items if items.exists() else None
        )
    ws.ingest_links(world / "known_links.csv")
    train(ws)
    return ws


def linked_world(factory: pytest.TempPathFactory) -> tuple[Workspace, Path]:
    """300 synthetic persons on video and music (60 % known links), half of the music
    accounts' history held out, trained and linked: (workspace, data folder)."""
    raw = factory.mktemp("raw")
    generate_synthetic(
        raw, SyntheticConfig(accounts=300, events=8000, anchor_fraction=0.6, format="csv", seed=5)
    )
    data = factory.mktemp("data") / "d"
    build_holdout(raw, data, "music", cold_fraction=0.5, warm_fraction=0.2, seed=5)
    ws = build_workspace(data, factory.mktemp("ws") / "ws", ("video", "music"))
    run_link(ws)
    return ws, data
