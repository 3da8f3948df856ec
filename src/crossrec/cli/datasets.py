"""``crossrec datasets ...`` commands."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Register the datasets command group on ``app``."""
