"""``init``, ``ingest``, ``ingest-links``, ``stats`` and ``quarantine`` commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from crossrec.cli.common import JsonOpt, WorkspaceOpt, err, new_app, open_workspace, out, print_json
from crossrec.errors import InputError

FormatOpt = Annotated[
    str,
    typer.Option("--format", help="Input format: auto, csv, jsonl or parquet."),
]


def parse_columns(spec: str | None) -> dict[str, str]:
    """Parse ``canon=source,...`` into ``{canon: source}``."""
    if not spec:
        return {}
    mapping: dict[str, str] = {}
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        canon, sep, source = part.partition("=")
        if not sep or not canon.strip() or not source.strip():
            raise InputError(
                f"--columns: {part!r} is not canon=source",
                hint="e.g. --columns account=userId,item=movieId,value=rating,timestamp=ts",
            )
        if canon.strip() in mapping:
            raise InputError(f"--columns: {canon.strip()!r} is mapped twice")
        mapping[canon.strip()] = source.strip()
    return mapping


def _summary_line(s: object) -> str:
    from crossrec.ingest.pipeline import IngestSummary

    assert isinstance(s, IngestSummary)
    unknown = f", unknown accounts {s.unknown_accounts:,}" if s.kind == "links" else ""
    return (
        f"{s.kind} {s.file}: accepted {s.accepted:,}, quarantined {s.quarantined:,}, "
        f"duplicates {s.duplicates:,}{unknown}, {s.seconds:.2f} s"
    )


def register(app: typer.Typer) -> None:
    @app.command()
    def init(workspace: WorkspaceOpt = Path(".")) -> None:
        """Create a workspace: crossrec.toml, crossrec.duckdb, models/, reports/ and a key file."""
        from crossrec.workspace import Workspace

        ws = Workspace.init(workspace)
        err.print(f"workspace ready at {ws.root}")
        ws.close()

    @app.command()
    def ingest(
        platform: Annotated[str, typer.Option("--platform", help="Platform name, e.g. video.")],
        events: Annotated[
            Path, typer.Option("--events", help="Events file: CSV, JSONL or Parquet.")
        ],
        workspace: WorkspaceOpt = Path("."),
        items: Annotated[
            Path | None, typer.Option("--items", help="Items file with item,title,text,category.")
        ] = None,
        columns: Annotated[
            str | None,
            typer.Option(
                "--columns", help="Map canonical fields to file columns: canon=source,..."
            ),
        ] = None,
        fmt: FormatOpt = "auto",
        json_out: JsonOpt = False,
    ) -> None:
        """Ingest a platform's events (and items): bad rows go to the quarantine with reasons."""
        from crossrec.cli.progress import rich_progress
        from crossrec.store.lock import WriterLock

        mapping = parse_columns(columns)
        with open_workspace(workspace) as ws, WriterLock(ws.root), rich_progress() as progress:
            summaries = ws.ingest_events(
                platform, events, items=items, columns=mapping, fmt=fmt, progress=progress
            )
        for s in summaries:
            err.print(_summary_line(s), highlight=False)
        if json_out:
            print_json([s.as_dict() for s in summaries])

    @app.command("ingest-links")
    def ingest_links(
        file: Annotated[
            Path, typer.Argument(help="CSV: platform_a,account_a,platform_b,account_b.")
        ],
        workspace: WorkspaceOpt = Path("."),
        fmt: FormatOpt = "auto",
        json_out: JsonOpt = False,
    ) -> None:
        """Ingest known links between accounts (raw ids), e.g. the same login on two platforms."""
        from crossrec.cli.progress import rich_progress
        from crossrec.store.lock import WriterLock

        with open_workspace(workspace) as ws, WriterLock(ws.root), rich_progress() as progress:
            s = ws.ingest_links(file, fmt=fmt, progress=progress)
        err.print(_summary_line(s), highlight=False)
        if json_out:
            print_json(s.as_dict())

    @app.command()
    def stats(workspace: WorkspaceOpt = Path("."), json_out: JsonOpt = False) -> None:
        """Accounts, items and events per platform; quarantined rows, duplicates, known links."""
        with open_workspace(workspace) as ws:
            doc = ws.stats()
        if json_out:
            print_json(doc)
            return
        table = Table(title="crossrec workspace")
        for col in ("platform", "accounts", "items", "events"):
            table.add_column(col, justify="left" if col == "platform" else "right")
        for name, s in doc["platforms"].items():
            table.add_row(name, f"{s['accounts']:,}", f"{s['items']:,}", f"{s['events']:,}")
        out.print(table)
        out.print(
            f"quarantined: {doc['quarantined']:,}   duplicates: {doc['duplicates']:,}   "
            f"known links: {doc['known_links']:,}"
        )

    quarantine = new_app("Inspect or purge quarantined input rows (raw rows, kept apart).")
    app.add_typer(quarantine, name="quarantine")

    @quarantine.command("list")
    def quarantine_list(
        workspace: WorkspaceOpt = Path("."),
        limit: Annotated[int, typer.Option("--limit", "-n", help="Rows to show.")] = 50,
        file: Annotated[str | None, typer.Option("--file", help="Only rows of this file.")] = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Show quarantined rows: file, line, field, reason and the raw row."""
        with open_workspace(workspace) as ws:
            q = ws.quarantine()
            rows = q.list(limit=limit, file=file)
            total = q.count()
        if json_out:
            print_json({"total": total, "rows": rows})
            return
        table = Table(title=f"quarantine ({total:,} rows)")
        for col in ("file", "line", "kind", "field", "reason", "raw"):
            table.add_column(col, overflow="fold")
        for r in rows:
            table.add_row(
                r["file"], str(r["line"]), r["kind"], r["field"] or "", r["reason"], r["raw"] or ""
            )
        out.print(table)

    @quarantine.command("purge")
    def quarantine_purge(
        workspace: WorkspaceOpt = Path("."),
        file: Annotated[
            str | None, typer.Option("--file", help="Only rows of this file (default: all).")
        ] = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Delete quarantined rows (all, or those of one file) and reclaim their bytes."""
        with open_workspace(workspace) as ws:
            n = ws.quarantine().purge(file=file)
        err.print(f"purged {n:,} quarantined rows")
        if json_out:
            print_json({"purged": n})
