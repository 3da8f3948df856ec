"""Store backends behind one interface; backends are imported only when opened."""

from __future__ import annotations

from pathlib import Path

from crossrec.store.base import PlatformStats, Store, WriteResult

__all__ = ["PlatformStats", "Store", "WriteResult", "open_store"]


def open_store(
    path: Path, *, create: bool = False, read_only: bool = False, memory_limit: str | None = None
) -> Store:
    """Open the DuckDB store at ``path`` (``create`` makes a new one); ``memory_limit`` (e.g.
    "4GB") bounds what the store may hold in memory before spilling to disk."""
    from crossrec.store.duckdb import DuckDBStore

    return DuckDBStore(path, create=create, read_only=read_only, memory_limit=memory_limit)
