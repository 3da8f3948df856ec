"""``crossrec demo``: the README's main job, end to end on the embedded store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from crossrec.cli.common import JsonOpt, err, out, print_json


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(
        workspace: Annotated[
            Path, typer.Option("--workspace", "-w", help="Workspace directory to create or reuse.")
        ] = Path("demo-workspace"),
        seed: Annotated[int, typer.Option("--seed", help="Seed of the data split.")] = 42,
        json_out: JsonOpt = False,
    ) -> None:
        """From nothing: split MovieLens into two platforms, ingest, train, link, evaluate
        linkage and recommendation, and write the HTML report."""
        from crossrec.cli.progress import rich_progress
        from crossrec.demo import run_demo

        with rich_progress() as progress:
            summary = run_demo(workspace, seed=seed, progress=progress)
        if json_out:
            print_json(summary)
            return
        err.print(f"data: {summary['source']}")
        table = Table(title=f"demo workspace {summary['workspace']}")
        for col in ("platform", "accounts", "items", "events"):
            table.add_column(col, justify="left" if col == "platform" else "right")
        for name, s in summary["stats"]["platforms"].items():
            table.add_row(name, f"{s['accounts']:,}", f"{s['items']:,}", f"{s['events']:,}")
        out.print(table)
        m = summary["model"]
        out.print(
            f"model {m['version']}: {m['text_items']:,} items embedded, "
            f"{m['sequence_epochs']} sequence epochs, trained in {m['seconds']} s"
        )
        link = summary["link"]
        precision = link["heldout_precision"]
        shown = "—" if precision is None else f"{precision:.3f}"
        note = f"; {link['reason']}" if link["reason"] else ""
        out.print(f"links asserted: {link['asserted_links']:,} (held-out precision {shown}){note}")
        if "link_evaluation" in summary:
            ev = summary["link_evaluation"]
            keys = ("hits@1", "hits@10", "mrr", "precision", "recall")
            table = Table(title=f"linkage against the truth ({ev['n_truth']:,} pairs)")
            table.add_column("method")
            for key in keys:
                table.add_column(key, justify="right")

            def cell(v: object) -> str:
                return "—" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)

            table.add_row("crossrec", *[cell(ev[k]) for k in keys])
            for name, b in ev["baselines"].items():
                table.add_row(name, *[cell(b[k]) for k in keys])
            out.print(table)
        for label, ev in summary.get("recommend_evaluation", {}).items():
            rec_keys = ("recall@10", "ndcg@10", "hit@10")
            table = Table(
                title=f"recommendation, {label} ({ev['n_accounts']:,} accounts, full catalogue)"
            )
            table.add_column("method")
            for key in rec_keys:
                table.add_column(key, justify="right")
            table.add_row("crossrec", *[f"{ev[k]:.4f}" for k in rec_keys])
            for name, b in ev["baselines"].items():
                table.add_row(name, *[f"{b[k]:.4f}" for k in rec_keys])
            out.print(table)
        st = summary["stats"]
        out.print(
            f"known links: {st['known_links']:,}   quarantined: {st['quarantined']:,}   "
            f"duplicates: {st['duplicates']:,}   seconds: {summary['seconds']}"
        )
        if "report" in summary:
            out.print(f"report: {summary['report']}")
