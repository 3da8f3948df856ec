"""``export links``: the links in the company's own account ids."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from crossrec.cli.common import JsonOpt, WorkspaceOpt, err, new_app, open_workspace, print_json

#: ``--ids PLATFORM=FILE`` (repeatable), shared by ``export links``, ``links`` and ``similar``.
IdsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--ids",
        metavar="PLATFORM=FILE",
        help="PLATFORM=FILE: a CSV/JSONL/Parquet file with the platform's raw account ids "
        "(an account column, e.g. the events file ingested); repeat per platform.",
    ),
]
IdColumnsOpt = Annotated[
    str | None,
    typer.Option(
        "--columns", metavar="account=NAME", help="The id lists' account column: account=NAME."
    ),
]


def load_ids(ws: Any, specs: list[str] | None, columns: str | None) -> Any:
    """The :class:`~crossrec.idmap.IdMap` of ``--ids``/``--columns`` (None without ``--ids``)."""
    if not specs:
        if columns:
            from crossrec.errors import InputError

            raise InputError("--columns names the id lists' column: give --ids PLATFORM=FILE")
        return None
    from crossrec.cli.ingest import parse_columns
    from crossrec.errors import InputError
    from crossrec.idmap import IdMap, parse_id_spec

    known = ws.store.platforms()
    for spec in specs:  # a misspelt platform would resolve nothing, silently
        platform = parse_id_spec(spec)[0]
        if platform not in known:
            raise InputError(
                f"--ids {spec}: no platform {platform!r} in the workspace",
                hint=f"platforms: {', '.join(known) or 'none (ingest first)'}",
            )
    return IdMap.from_specs(specs, ws.pseudonymiser, parse_columns(columns))


def register(app: typer.Typer) -> None:
    export = new_app("Write results in the company's own account ids.")
    app.add_typer(export, name="export")

    @export.command("links")
    def links(
        out: Annotated[Path, typer.Option("--out", help="Output file: .csv or .parquet.")],
        ids: IdsOpt = None,
        columns: IdColumnsOpt = None,
        status: Annotated[
            str, typer.Option("--status", help="Which links: asserted, probable or all.")
        ] = "asserted",
        workspace: WorkspaceOpt = Path("."),
        json_out: JsonOpt = False,
    ) -> None:
        """Write the links as raw id pairs: platform_a,account_a,platform_b,account_b,
        probability,status,evidence. The file holds raw ids."""
        from crossrec.errors import InputError
        from crossrec.link.export import STATUSES, export_links, output_format

        if status not in STATUSES:
            raise InputError(f"--status {status!r} is not one of {', '.join(STATUSES)}")
        output_format(out)  # a wrong --out is refused before any id list is read
        if not ids:
            raise InputError(
                "export links needs --ids PLATFORM=FILE for each platform",
                hint="the store holds no raw id; give the files the accounts came from",
            )
        with open_workspace(workspace) as ws:
            idmap = load_ids(ws, ids, columns)
            summary = export_links(ws.store, idmap, out, status)
        left = summary["left_out"]
        err.print(
            f"{summary['written']:,} of {summary['links']:,} {status} links written to {out} "
            "(raw ids)"
            + (
                f"; {left:,} left out: accounts the id lists do not hold ("
                + ", ".join(f"{p}: {n:,}" for p, n in summary["unresolved"].items())
                + ")"
                if left
                else ""
            ),
            highlight=False,
        )
        if json_out:
            print_json(summary)
