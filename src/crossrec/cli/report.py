"""``crossrec report``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from crossrec.cli.common import JsonOpt, WorkspaceOpt, open_workspace, out, print_json


def register(app: typer.Typer) -> None:
    @app.command()
    def report(
        workspace: WorkspaceOpt = Path("."),
        output: Annotated[
            Path | None,
            typer.Option(
                "--output",
                "-o",
                help="Report file (default: reports/report-<UTC timestamp>.html).",
            ),
        ] = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Write one self-contained HTML report (data, linkage and recommendation
        evaluations with plots, account map, model) and print its path."""
        with open_workspace(workspace) as ws:
            path = ws.report(output)
        if json_out:
            print_json({"path": str(path)})
        else:
            out.print(str(path), highlight=False, soft_wrap=True)
