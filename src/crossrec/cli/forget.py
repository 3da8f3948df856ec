"""``forget``: erase an account, or a person, from the workspace."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from crossrec.cli.common import JsonOpt, WorkspaceOpt, err, open_workspace, print_json
from crossrec.errors import WorkspaceError


def register(app: typer.Typer) -> None:
    @app.command()
    def forget(
        platform: Annotated[str, typer.Option("--platform", help="The account's platform.")],
        account: Annotated[
            str,
            typer.Option(
                "--account",
                help="The account's raw id as the platform sent it (trimmed and normalised "
                "as on ingest).",
            ),
        ],
        workspace: WorkspaceOpt = Path("."),
        person: Annotated[
            bool,
            typer.Option(
                "--person",
                help="Also erase every account linked to it (the whole person).",
            ),
        ] = False,
        json_out: JsonOpt = False,
    ) -> None:
        """Erase an account from the store, the quarantine, every model version and the
        reports, leaving no trace of it in the workspace's files.

        Erasure holds: the store keeps a suppression mark per erased account (a keyed hash,
        never the raw id), so its events in a later file, POST or Kafka message are
        quarantined with reason "erased" (without the raw row) instead of being stored."""
        from crossrec.store.lock import WriterLock

        with open_workspace(workspace) as ws, WriterLock(ws.root):
            result = ws.forget(platform, account, person=person)
        n = len(result["accounts"])
        err.print(
            f"erased {n} account{'s' if n != 1 else ''} "
            f"({', '.join(p for p, _ in result['accounts'])}); "
            f"data up to {result['deleted_until']} is gone",
            highlight=False,
        )
        if json_out:
            print_json(result)
        if result["leftovers"]:
            raise WorkspaceError(
                f"these files still mention an erased account: {', '.join(result['leftovers'])}",
                hint="delete or regenerate them (e.g. retrain), then check again",
            )
