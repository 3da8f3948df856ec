"""The backend-neutral ``Store`` interface.

Everything above the store (ingest, representations, linkage, recommendation) talks to this
interface with Arrow tables and record-batch streams; no SQL dialect leaks upwards. The DuckDB
implementation is the embedded default; a Spark implementation follows the same contract.
Backend modules are imported only by :func:`crossrec.store.open_store`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pyarrow as pa


@dataclass(frozen=True)
class WriteResult:
    """Rows offered to a write, and how many of them were new."""

    offered: int
    inserted: int

    @property
    def duplicates(self) -> int:
        return self.offered - self.inserted


@dataclass(frozen=True)
class PlatformStats:
    accounts: int
    items: int
    events: int


#: Accounts at most in one person as :meth:`Store.person_rows` walks it.
PERSON_LIMIT = 64


class Store(ABC):
    """Canonical tables of one workspace.

    Writes made inside :meth:`transaction` are atomic: either all of them are visible
    afterwards or none is (a crash part-way leaves the store as it was).
    """

    # -- lifecycle -------------------------------------------------------------------------
    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @abstractmethod
    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Run the writes of the ``with`` block atomically."""
        yield

    @abstractmethod
    def checkpoint(self) -> None:
        """Flush the write-ahead log into the main file (erased bytes leave the disk)."""

    # -- metadata ------------------------------------------------------------------------------
    @abstractmethod
    def get_meta(self, key: str) -> str | None: ...

    @abstractmethod
    def set_meta(self, key: str, value: str) -> None: ...

    # -- writes ----------------------------------------------------------------------------------
    @abstractmethod
    def next_seq(self) -> int:
        """The first free value of the ``events.seq`` ingest-order counter."""

    @abstractmethod
    def insert_events(
        self, batches: pa.RecordBatchReader, *, unique: bool = False, platform: str | None = None
    ) -> WriteResult:
        """Insert canonical event rows, skipping those whose ``(platform, event_id)`` exists
        (in the store or earlier in the same stream). ``unique`` promises the stream holds
        no repeats (then the caller counts duplicates; otherwise the store adds them to the
        running count). ``platform`` names the stream's one platform, when it has one."""

    @abstractmethod
    def upsert_accounts(self, table: pa.Table) -> None:
        """Merge (platform, account, first_seen, last_seen) rows into ``accounts``."""

    @abstractmethod
    def upsert_items(self, table: pa.Table) -> WriteResult:
        """Insert or replace items by ``(platform, item)``; ``inserted`` counts new items."""

    @abstractmethod
    def insert_identifiers(self, table: pa.Table) -> WriteResult: ...

    @abstractmethod
    def insert_known_links(self, table: pa.Table) -> WriteResult:
        """Insert links (stored with the lexicographically smaller side as ``a``)."""

    @abstractmethod
    def replace_links(self, links: pa.Table, persons: pa.Table) -> None:
        """Replace the asserted links and the identity graph (persons) in one transaction."""

    @abstractmethod
    def update_links(self, remove: list[tuple[str, str, str | None]], add: pa.Table) -> None:
        """Online link changes in one transaction: drop the asserted links of each
        ``(platform, account, other_platform or None for all)``, then insert ``add``."""

    @abstractmethod
    def replace_persons(self, accounts: list[tuple[str, str]], persons: pa.Table) -> None:
        """In one transaction: drop the ``persons`` rows of ``accounts``, insert ``persons``
        (online changes to the identity graph)."""

    @abstractmethod
    def add_duplicates(self, n: int) -> None:
        """Add ``n`` to the workspace's running count of duplicate input rows."""

    @abstractmethod
    def log_ingest(self, row: dict[str, Any]) -> None: ...

    # -- reads -----------------------------------------------------------------------------------
    @abstractmethod
    def platforms(self) -> list[str]: ...

    @abstractmethod
    def read(
        self,
        table: str,
        *,
        columns: Sequence[str] | None = None,
        platform: str | None = None,
        order_by: Sequence[str] | None = None,
    ) -> pa.Table:
        """Rows of a canonical table, optionally of one platform, as Arrow."""

    @abstractmethod
    def count(self, table: str, *, platform: str | None = None) -> int: ...

    @abstractmethod
    def platform_stats(self) -> dict[str, PlatformStats]: ...

    @abstractmethod
    def duplicates_total(self) -> int: ...

    @abstractmethod
    def has_account(self, platform: str, account: str) -> bool: ...

    def account_events(
        self, platform: str, account: str, *, columns: Sequence[str] | None = None
    ) -> pa.Table:
        """One account's events in ingest order (backends override this with an indexed
        read; this default filters the platform's events)."""
        import pyarrow.compute as pc

        cols = list(columns) if columns else None
        table = self.read("events", platform=platform, order_by=["seq"])
        table = table.filter(pc.equal(table["account"], account))
        return table.select(cols) if cols else table

    def person_rows(
        self, platform: str, account: str, *, limit: int = PERSON_LIMIT
    ) -> tuple[pa.Table, pa.Table, pa.Table]:
        """One account's person as the links stand now, read without reading whole tables.

        The person is every account connected to this one through asserted and known links
        (either side of a row), walked outwards up to ``limit`` accounts; links re-scored
        online count at once, before ``crossrec link`` rewrites the ``persons`` table.
        Returns ``(persons, links, known_links)``: the ``persons`` rows of those accounts
        (their person ids from the last ``crossrec link``), then every ``links`` and
        ``known_links`` row touching them, each in table order. Backends override this
        default, which filters whole tables."""
        tables = {name: self.read(name) for name in ("links", "known_links")}
        if "status" in tables["links"].column_names:  # probable links join no one
            import pyarrow.compute as pc

            status = pc.fill_null(tables["links"]["status"], "asserted")
            tables["links"] = tables["links"].filter(pc.equal(status, "asserted"))
        ends = {
            name: list(
                zip(
                    zip(t["platform_a"].to_pylist(), t["account_a"].to_pylist(), strict=True),
                    zip(t["platform_b"].to_pylist(), t["account_b"].to_pylist(), strict=True),
                    strict=True,
                )
            )
            for name, t in tables.items()
        }
        members = {(platform, account)}
        frontier = set(members)
        while frontier and len(members) < limit:
            found = {
                other
                for pairs in ends.values()
                for x, y in pairs
                for me, other in ((x, y), (y, x))
                if me in frontier
            }
            frontier = found - members
            members |= frontier

        def touching(name: str) -> pa.Table:
            mask = [x in members or y in members for x, y in ends[name]]
            return tables[name].filter(pa.array(mask, pa.bool_()))

        persons = self.read("persons")
        keys = zip(persons["platform"].to_pylist(), persons["account"].to_pylist(), strict=True)
        persons = persons.filter(pa.array([k in members for k in keys], pa.bool_()))
        return persons, touching("links"), touching("known_links")

    # -- concurrency -----------------------------------------------------------------------------
    def cursor(self) -> Store:
        """A store for reads from another thread that never waits on this one's writes
        (backends without cursors return themselves)."""
        return self

    # -- API tokens (only their SHA-256 is stored) ---------------------------------------------
    @abstractmethod
    def add_api_token(self, row: dict[str, Any]) -> None:
        """Insert one ``api_tokens`` row."""

    @abstractmethod
    def revoke_api_token(self, token_id: str, at: Any) -> bool:
        """Mark a token revoked at ``at``; False when no unrevoked token has that id."""

    # -- summaries -------------------------------------------------------------------------------
    def account_activity(self, platform: str | None = None) -> pa.Table:
        """Per account: ``platform, account, events, first_ts, last_ts`` (timestamps null when
        the account's events have none), sorted by platform and account. Backends override
        this default, which reads every event, with an aggregate query."""
        table = self.read("events", columns=["platform", "account", "ts"], platform=platform)
        grouped = table.group_by(["platform", "account"]).aggregate(
            [("account", "count"), ("ts", "min"), ("ts", "max")]
        )
        return (
            grouped.select(["platform", "account", "account_count", "ts_min", "ts_max"])
            .rename_columns(["platform", "account", "events", "first_ts", "last_ts"])
            .sort_by([("platform", "ascending"), ("account", "ascending")])
        )

    # -- erasure ---------------------------------------------------------------------------------
    @abstractmethod
    def erase_accounts(self, accounts: Sequence[tuple[str, str]]) -> dict[str, int]:
        """Delete every row that names one of these ``(platform, account)`` pseudonyms, in one
        transaction: rows of every table whose ``account`` / ``account_x`` column holds one
        (with its ``platform`` / ``platform_x`` column when the table has it), then rows whose
        text columns still mention one. Returns the rows deleted per table (tables with none
        left out). Deleted bytes may stay in the backend's files until it rewrites them."""

    @abstractmethod
    def add_erasure_marks(self, marks: Sequence[tuple[str, str]]) -> None:
        """Record ``(platform, mark)`` suppression marks of erased accounts (see
        ``schema.ERASED_ACCOUNTS``); a mark already there is kept as it is."""

    @abstractmethod
    def erasure_marks(self, platform: str) -> list[str]:
        """Every suppression mark of ``platform`` (erasures are few: a short list)."""

    @abstractmethod
    def erased_among(self, marks: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        """The ``(platform, mark)`` pairs of ``marks`` that are in the suppression list."""

    # -- stream offsets --------------------------------------------------------------------------
    @abstractmethod
    def stream_offsets(self, group: str, topic: str) -> dict[int, int]:
        """``{partition: next offset}`` a stream consumer group has stored for ``topic``."""

    @abstractmethod
    def save_stream_offsets(self, group: str, topic: str, offsets: dict[int, int]) -> None:
        """Store the next offset per partition; call it inside the :meth:`transaction` that
        writes the batch's events, so events and offsets commit together (exactly once)."""
