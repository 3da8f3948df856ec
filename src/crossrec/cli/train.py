"""``crossrec train`` and ``crossrec models list``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from crossrec.cli.common import JsonOpt, WorkspaceOpt, err, new_app, open_workspace, out, print_json


def register(app: typer.Typer) -> None:
    @app.command()
    def train(workspace: WorkspaceOpt = Path("."), json_out: JsonOpt = False) -> None:
        """Train the text encoder cache, CF, sequence encoder, profiles and indexes."""
        from crossrec.cli.progress import rich_progress
        from crossrec.train import train as run_train

        with open_workspace(workspace) as ws, rich_progress() as progress:
            meta = run_train(ws, progress=progress)
        err.print(f"model {meta['version']} trained in {meta['seconds']} s and marked current")
        if json_out:
            print_json(meta)

    models = new_app("Model versions of the workspace.")
    app.add_typer(models, name="models")

    @models.command("list")
    def models_list(workspace: WorkspaceOpt = Path("."), json_out: JsonOpt = False) -> None:
        """Show model versions with their data sizes and metrics."""
        from crossrec.models import ModelRegistry

        with open_workspace(workspace) as ws:
            rows = ModelRegistry(ws.models_dir).list()
        if json_out:
            print_json(rows)
            return
        table = Table(title="models")
        for col in (
            "version",
            "current",
            "created",
            "events",
            "accounts",
            "text",
            "sequence",
            "index recall@10",
            "seconds",
        ):
            table.add_column(col)
        for m in rows:
            metrics = m.get("metrics", {})
            seq = metrics.get("sequence", {})
            recalls = [
                v.get("recall_at_10", 1.0)
                for space in metrics.get("index", {}).values()
                for v in space.values()
            ]
            table.add_row(
                m["version"],
                "*" if m.get("current") else "",
                m.get("created_at", ""),
                f"{m['data']['events']:,}",
                ", ".join(f"{p} {n:,}" for p, n in m["data"]["accounts"].items()),
                f"{metrics.get('text', {}).get('items_with_text', 0):,} items",
                f"{len(seq.get('epochs', []))} epochs (best {seq.get('best_epoch', '?')})",
                f"{min(recalls):.3f}" if recalls else "",
                str(m.get("seconds", "")),
            )
        out.print(table)
