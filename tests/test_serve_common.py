"""Set-up shared by the HTTP service tests: a tiny trained workspace, served in-process.

The workspace (120 synthetic accounts on two platforms, a fast training config) is built once
per session under pytest's base temporary folder; each test that serves it works on a copy,
so tests that ingest or erase never see each other. Also here: the committed OpenAPI document
must be the one the app generates.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import REPO

TEMPLATE = "serve-template"
PLATFORMS = ("video", "music")


@dataclass(frozen=True)
class World:
    """The template workspace and raw ids known to be in it."""

    root: Path  # the workspace directory (copy it before serving)
    accounts: dict[str, list[str]]  # platform -> raw account ids (sorted)
    events: dict[str, dict[str, int]]  # platform -> raw account id -> events in its file
    items: dict[str, list[str]]  # platform -> item ids
    known_links: list[tuple[str, str, str, str]]  # (platform_a, raw_a, platform_b, raw_b)


def fast_config(ws_root: Path) -> None:
    """Static encoder, tiny sequence model, few CF iterations: trains in seconds."""
    cfg = ws_root / "crossrec.toml"
    text = cfg.read_text()
    text = text.replace('encoder = "minilm"', 'encoder = "static"')
    text = text.replace("epochs = 20", "epochs = 2").replace("dim = 64", "dim = 16")
    text = text.replace("cf_iterations = 15", "cf_iterations = 3")
    cfg.write_text(text)


def build_world(base: Path) -> World:
    """Build the template under ``base`` once; later calls read what was built."""
    done = base / "world.json"
    if not done.exists():
        from crossrec.datasets.synthetic import SyntheticConfig, generate_synthetic
        from crossrec.train import train
        from crossrec.workspace import Workspace

        data = base / "data"
        generate_synthetic(
            data, SyntheticConfig(accounts=120, events=2400, platforms=2, format="csv", seed=7)
        )
        Workspace.init(base / "ws").close()
        fast_config(base / "ws")
        with Workspace(base / "ws") as ws:
            for p in PLATFORMS:
                ws.ingest_events(p, data / p / "events.csv", items=data / p / "items.csv")
            ws.ingest_links(data / "known_links.csv")
            train(ws)
        events: dict[str, dict[str, int]] = {}
        items: dict[str, list[str]] = {}
        for p in PLATFORMS:
            with (data / p / "events.csv").open() as fh:
                counts: dict[str, int] = {}
                for row in csv.DictReader(fh):
                    counts[row["account"]] = counts.get(row["account"], 0) + 1
            events[p] = counts
            with (data / p / "items.csv").open() as fh:
                items[p] = sorted(row["item"] for row in csv.DictReader(fh))
        with (data / "known_links.csv").open() as fh:
            links = [
                [r["platform_a"], r["account_a"], r["platform_b"], r["account_b"]]
                for r in csv.DictReader(fh)
            ]
        done.write_text(json.dumps({"events": events, "items": items, "links": links}))
    doc = json.loads(done.read_text())
    return World(
        root=base / "ws",
        accounts={p: sorted(c) for p, c in doc["events"].items()},
        events=doc["events"],
        items=doc["items"],
        known_links=[tuple(x) for x in doc["links"]],
    )


def world_of(tmp_path_factory) -> World:
    return build_world(_mkdir(tmp_path_factory.getbasetemp() / TEMPLATE))


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class Served:
    """An app over a copy of the world, with tokens of every kind."""

    client: object  # fastapi.testclient.TestClient
    state: object  # crossrec.serve.state.ServeState
    tokens: dict[str, str]
    root: Path

    def auth(self, which: str = "rw") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[which]}"}


def copy_world(world: World, dest: Path) -> Path:
    shutil.copytree(world.root, dest)
    return dest


@contextmanager
def serve(world: World, dest: Path) -> Iterator[Served]:
    """Serve a copy of ``world`` in-process (model polling off: tests swap explicitly)."""
    from fastapi.testclient import TestClient

    from crossrec.serve.app import create_app
    from crossrec.serve.auth import create_token, revoke_token
    from crossrec.serve.state import ServeState
    from crossrec.workspace import Workspace

    root = copy_world(world, dest)
    ws = Workspace(root)
    tokens = {
        "rw": create_token(ws.store, ("read", "write"), "rw")[0],
        "read": create_token(ws.store, ("read",), "reader")[0],
        "write": create_token(ws.store, ("write",), "writer")[0],
        "revoked": create_token(ws.store, ("read", "write"), "gone")[0],
    }
    revoke_token(ws.store, tokens["revoked"])
    state = ServeState(ws, poll_seconds=3600)
    try:
        with TestClient(create_app(state), raise_server_exceptions=False) as client:
            yield Served(client, state, tokens, root)
    finally:
        ws.close()


def test_committed_openapi_document_is_the_generated_one():
    from crossrec.cli.serve import openapi_document

    committed = json.loads((REPO / "docs" / "openapi.json").read_text(encoding="utf-8"))
    assert committed == openapi_document(), "run `make openapi` and commit docs/openapi.json"


def test_openapi_documents_every_route_with_error_bodies():
    from crossrec.cli.serve import openapi_document

    doc = openapi_document()
    paths = doc["paths"]
    account = "/v1/platforms/{platform}/accounts/{account}"
    assert set(paths) == {
        "/healthz",
        "/readyz",
        "/metrics",
        "/v1/platforms/{platform}/events",
        account,
        account + "/recommendations",
        account + "/links",
        account + "/similar",
        account + "/profile",
        "/v1/explorer/summary",
        "/v1/explorer/signals",
        "/v1/explorer/platforms/{platform}/accounts/{account}",
    }
    recs = paths[account + "/recommendations"]["get"]
    # client mistakes are documented with the one error body, not FastAPI's default
    for code in ("401", "403", "404", "422", "429"):
        assert recs["responses"][code]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ErrorBody"
        }
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    assert recs["security"] == [{"HTTPBearer": []}]
    assert "security" not in paths["/healthz"]["get"]
