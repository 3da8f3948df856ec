"""``recommend`` and ``evaluate recommend``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from crossrec.cli.common import JsonOpt, WorkspaceOpt, open_workspace, out, print_json

PlatformOpt = Annotated[str, typer.Option("--platform", help="The platform to recommend on.")]
KOpt = Annotated[int, typer.Option("-k", help="How many items.", min=1)]


def register(app: typer.Typer) -> None:
    from crossrec.cli.link import EVALUATE

    @app.command()
    def recommend(
        platform: PlatformOpt,
        account: Annotated[str, typer.Option("--account", help="The account's raw id.")],
        k: KOpt = 10,
        workspace: WorkspaceOpt = Path("."),
        json_out: JsonOpt = False,
    ) -> None:
        """Top-k items on a platform for an account, each with the reason it is there."""
        with open_workspace(workspace) as ws:
            doc = ws.recommend(platform, account, k)
        if json_out:
            print_json(doc)
            return
        table = Table(title=f"{platform} for {account} (model {doc['model_version']})")
        for col in ("#", "item", "title", "category", "score", "reason"):
            table.add_column(col, justify="right" if col in ("#", "score") else "left")
        for i, r in enumerate(doc["items"], 1):
            table.add_row(
                str(i),
                str(r["item"]),
                r.get("title") or "—",
                r.get("category") or "—",
                f"{r['score']:.3f}",
                str(r["reason"]),
            )
        out.print(table)

    @EVALUATE.command("recommend")
    def evaluate_recommend(
        platform: PlatformOpt,
        test: Annotated[
            Path,
            typer.Option(
                "--test", help="CSV: account,item (raw ids on the platform), not ingested."
            ),
        ],
        k: KOpt = 10,
        label: Annotated[
            str | None, typer.Option("--label", help="Name of this test in the report.")
        ] = None,
        workspace: WorkspaceOpt = Path("."),
        json_out: JsonOpt = False,
    ) -> None:
        """Recall@k, NDCG@k and HR@k over the full catalogue, beside popularity, ALS on the
        platform alone and an EMCDR-style ridge mapping."""
        from crossrec.evaluate.rec_eval import evaluate_recommend as run
        from crossrec.evaluate.rec_eval import metric_keys

        with open_workspace(workspace) as ws:
            doc = run(ws, platform, test, k=k, label=label)
        if json_out:
            print_json(doc)
            return
        keys = metric_keys(k)
        table = Table(title=f"recommendation on {platform} against {test}")
        table.add_column("method")
        for key in keys:
            table.add_column(key, justify="right")
        rows = [("crossrec", doc), *doc["baselines"].items()]
        for name, m in rows:
            table.add_row(
                name, *[f"{m[key]:.4f}" if key != "n_accounts" else str(m[key]) for key in keys]
            )
        out.print(table)
