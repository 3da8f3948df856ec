"""``link``, ``links``, ``similar`` and ``evaluate link``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from crossrec.cli.common import JsonOpt, WorkspaceOpt, err, new_app, open_workspace, out, print_json
from crossrec.cli.export import IdColumnsOpt, IdsOpt, load_ids
from crossrec.errors import InputError

PlatformOpt = Annotated[str, typer.Option("--platform", help="The account's platform.")]
AccountOpt = Annotated[str, typer.Option("--account", help="The account's raw id.")]


def _fmt(v: Any) -> str:
    return "—" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def _shown(entry: dict[str, Any], key: str) -> str:
    """An account as a table shows it: its raw id where known, else its pseudonym."""
    raw = entry.get(f"{key}_raw")
    return str(raw if raw is not None else entry[key])


#: ``crossrec evaluate ...``; other command modules add their evaluations to it.
EVALUATE = new_app("Evaluate linkage and recommendation against held-out truth.")


def register(app: typer.Typer) -> None:
    @app.command()
    def link(
        workspace: WorkspaceOpt = Path("."),
        precision: Annotated[
            float | None,
            typer.Option(
                "--precision",
                min=0.5,
                max=1.0,
                help="Target precision of asserted links for this run "
                "(default: link.link_precision).",
            ),
        ] = None,
        engine: Annotated[
            str | None,
            typer.Option(
                "--engine",
                help="local or spark: where one-to-one assignment and the identity graph "
                "run (default: [engine] kind).",
            ),
        ] = None,
        master: Annotated[
            str | None,
            typer.Option("--master", help="Spark master URL for --engine spark."),
        ] = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Link accounts of the same person across platforms (current model).

        Mutual-best pairs at or above the certified threshold are asserted; below it, those
        with a link probability of at least 0.5 are written as probable (they join no
        person)."""
        from crossrec.cli.progress import rich_progress
        from crossrec.link.pipeline import run_link
        from crossrec.store.lock import WriterLock

        ws = open_workspace(workspace)
        # it writes the links and persons tables: one writer at a time
        with WriterLock(ws.root, command="crossrec link"), ws, rich_progress() as progress:
            if engine not in (None, "local", "spark"):
                raise InputError(f"unknown engine {engine!r}", hint="use local or spark")
            summary = run_link(
                ws, progress=progress, precision=precision, engine=engine, master=master
            )
        err.print(
            f"{summary['asserted_links']:,} links asserted and {summary['probable_links']:,} "
            f"probable from {summary['candidate_pairs']:,} candidate pairs (threshold "
            f"{_fmt(summary['threshold'])}, estimated precision "
            f"{_fmt(summary['heldout_precision'])}); {summary['persons']:,} persons",
            highlight=False,
        )
        if summary["reason"]:
            err.print(f"note: {summary['reason']}", highlight=False)
        if json_out:
            print_json(summary)

    @app.command()
    def links(
        platform: PlatformOpt,
        account: AccountOpt,
        workspace: WorkspaceOpt = Path("."),
        ids: IdsOpt = None,
        columns: IdColumnsOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        """The person's accounts on every platform, with probabilities, status and evidence;
        an account without a link shows its best candidates."""
        from crossrec.link.query import person_links

        with open_workspace(workspace) as ws:
            idmap = load_ids(ws, ids, columns)
            doc = person_links(ws, platform, account, ids=idmap, candidates=True)
        if json_out:
            print_json(doc)
            return
        out.print(
            f"person {doc['person'] if doc['person'] is not None else '(not linked)'}: "
            + ", ".join(f"{a['platform']}:{_shown(a, 'account')}" for a in doc["accounts"])
        )
        if doc["links"]:
            table = Table()
            for col in ("from", "to", "probability", "status", "source", "evidence"):
                table.add_column(col, overflow="fold")
            for e in doc["links"]:
                table.add_row(
                    f"{e['platform_a']}:{_shown(e, 'account_a')}",
                    f"{e['platform_b']}:{_shown(e, 'account_b')}",
                    _fmt(e["probability"]),
                    e["status"],
                    e["source"],
                    "; ".join(
                        f"{x.get('text', x.get('signal'))} ({x.get('value', 0):.2f})"
                        for x in e["evidence"]
                    ),
                )
            out.print(table)
        if doc["candidates"]:
            table = Table(title=f"best candidates of {platform}:{account} (no asserted link)")
            for col in ("account", "probability", "status"):
                table.add_column(col, overflow="fold")
            for c in doc["candidates"]:
                table.add_row(
                    f"{c['platform']}:{_shown(c, 'account')}", _fmt(c["probability"]), c["status"]
                )
            out.print(table)
        elif not doc["links"]:
            out.print("no link and no candidate in the current model (run `crossrec link`)")

    @app.command()
    def similar(
        platform: PlatformOpt,
        account: AccountOpt,
        on: Annotated[str, typer.Option("--on", help="Platform to search.")],
        workspace: WorkspaceOpt = Path("."),
        k: Annotated[int, typer.Option("-k", help="How many accounts.")] = 10,
        ids: IdsOpt = None,
        columns: IdColumnsOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        """The most similar accounts on another platform (similar people, not the same one)."""
        from crossrec.link.query import similar_accounts

        with open_workspace(workspace) as ws:
            idmap = load_ids(ws, ids, columns)
            doc = similar_accounts(ws, platform, account, on, k, ids=idmap)
        if json_out:
            print_json(doc)
            return
        table = Table(title=f"accounts on {on} like {platform}:{account}")
        for col in ("account", "similarity", "top categories"):
            table.add_column(col)
        for s in doc["similar"]:
            table.add_row(
                _shown(s, "account"), f"{s['similarity']:.3f}", ", ".join(s["top_categories"])
            )
        out.print(table)

    evaluate = EVALUATE
    app.add_typer(evaluate, name="evaluate")

    @evaluate.command("link")
    def evaluate_link(
        truth: Annotated[
            Path, typer.Option("--truth", help="CSV: platform_a,account_a,platform_b,account_b.")
        ],
        workspace: WorkspaceOpt = Path("."),
        json_out: JsonOpt = False,
    ) -> None:
        """Hits@1, Hits@10, MRR, precision, recall, F1 against truth, beside baselines."""
        from crossrec.evaluate.link_eval import KEYS
        from crossrec.evaluate.link_eval import evaluate_link as run

        with open_workspace(workspace) as ws:
            doc = run(ws, truth)
        if json_out:
            print_json(doc)
            return
        table = Table(title=f"linkage against {truth} ({doc['n_truth']:,} truth pairs)")
        table.add_column("method")
        for key in KEYS:
            table.add_column(key, justify="right")
        table.add_row("crossrec", *[_fmt(doc[k]) for k in KEYS])
        for name, b in doc["baselines"].items():
            table.add_row(name, *[_fmt(b[k]) for k in KEYS])
        out.print(table)
