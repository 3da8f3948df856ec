"""Shared pieces of the CLI: the error-handling group, consoles and common options.

Results go to stdout; progress, logs and errors go to stderr, so ``--json`` output can be
piped. A :class:`~crossrec.errors.CrossrecError` becomes a one-line message and its exit code,
never a traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from typer.core import TyperGroup

from crossrec.errors import CrossrecError

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


class CrossrecGroup(TyperGroup):
    """Turns crossrec errors raised by any subcommand into one line on stderr."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except CrossrecError as exc:
            err.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False)
            raise typer.Exit(exc.exit_code) from None
        except Exception as exc:
            # a database file found damaged part-way (it opened, a later read failed)
            from crossrec.store.lock import damage_error

            found = damage_error(exc)
            if found is None:
                raise
            err.print(f"[bold red]error:[/] {found}", markup=True, highlight=False)
            raise typer.Exit(found.exit_code) from None
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130) from None


def new_app(help_text: str) -> typer.Typer:
    return typer.Typer(
        cls=CrossrecGroup,
        help=help_text,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
    )


WorkspaceOpt = Annotated[
    Path,
    typer.Option(
        "--workspace",
        "-w",
        help="Workspace directory (default: the current directory).",
        file_okay=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print only a JSON document on stdout.")]


def open_workspace(path: Path) -> Any:
    from crossrec.workspace import Workspace

    return Workspace(path)


def print_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()
