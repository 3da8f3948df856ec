"""The canonical tables and their column contracts.

``SCHEMA_VERSION`` is stored in every workspace; a store written by another version is refused
with a message instead of being read wrongly.
"""

from __future__ import annotations

from dataclasses import dataclass

SCHEMA_VERSION = 2  # 2: events keep a numeric event_key; event_id only when given

#: Canonical event fields of an input file (``--columns`` maps a file's own names onto these).
EVENT_FIELDS: tuple[str, ...] = ("account", "item", "event", "value", "timestamp", "event_id")
REQUIRED_EVENT_FIELDS: tuple[str, ...] = ("account", "item")
#: Canonical item fields of an items file.
ITEM_FIELDS: tuple[str, ...] = ("item", "title", "text", "category")
#: Columns of a known-links file (raw ids).
LINK_FIELDS: tuple[str, ...] = ("platform_a", "account_a", "platform_b", "account_b")
DEFAULT_EVENT_TYPE = "interact"


@dataclass(frozen=True)
class Table:
    """A canonical table: its name and DuckDB column definitions (portable SQL types)."""

    name: str
    columns: tuple[tuple[str, str], ...]
    primary_key: tuple[str, ...] = ()
    #: Columns the store keeps for itself: created with the table, never read or written by
    #: callers (``column_names`` leaves them out).
    internal: tuple[tuple[str, str], ...] = ()

    @property
    def column_names(self) -> list[str]:
        return [c for c, _ in self.columns]

    def ddl(self) -> str:
        cols = ", ".join(f"{name} {typ}" for name, typ in (*self.columns, *self.internal))
        pk = f", PRIMARY KEY ({', '.join(self.primary_key)})" if self.primary_key else ""
        return f"CREATE TABLE IF NOT EXISTS {self.name} ({cols}{pk})"


EVENTS = Table(
    "events",
    (
        ("platform", "VARCHAR NOT NULL"),
        # keyed pseudonym, never the raw id; stored uncompressed: random hex compresses 2:1 at
        # best, and trying to compress it was the costliest step of appending events
        ("account", "VARCHAR USING COMPRESSION uncompressed NOT NULL"),
        ("item", "VARCHAR NOT NULL"),
        ("event_type", "VARCHAR NOT NULL"),
        ("value", "DOUBLE"),
        ("ts", "TIMESTAMPTZ"),
        # the id the platform gave; reads show 'h' + a digest of the fields when none was given
        ("event_id", "VARCHAR"),
        ("seq", "BIGINT NOT NULL"),  # ingest order: keeps file order for events without ts
        ("attrs", "JSON"),
    ),
    # the event's identity (crossrec.store.event_keys): dedupe compares 128-bit numbers
    internal=(("event_key", "UHUGEINT NOT NULL"),),
)
ITEMS = Table(
    "items",
    (
        ("platform", "VARCHAR NOT NULL"),
        ("item", "VARCHAR NOT NULL"),
        ("title", "VARCHAR"),
        ("text", "VARCHAR"),
        ("category", "VARCHAR"),
        ("attrs", "JSON"),
    ),
    ("platform", "item"),
)
ACCOUNTS = Table(
    "accounts",
    (
        ("platform", "VARCHAR NOT NULL"),
        ("account", "VARCHAR NOT NULL"),
        ("first_seen", "TIMESTAMPTZ"),
        ("last_seen", "TIMESTAMPTZ"),
        ("consent", "BOOLEAN NOT NULL DEFAULT TRUE"),
    ),
    ("platform", "account"),
)
ACCOUNT_IDENTIFIERS = Table(
    "account_identifiers",
    (
        ("platform", "VARCHAR NOT NULL"),
        ("account", "VARCHAR NOT NULL"),
        ("kind", "VARCHAR NOT NULL"),  # the personal column's name, e.g. email_hash
        ("value", "VARCHAR NOT NULL"),  # keyed pseudonym, equal across platforms
    ),
    ("platform", "account", "kind", "value"),
)
KNOWN_LINKS = Table(
    "known_links",
    (
        ("platform_a", "VARCHAR NOT NULL"),
        ("account_a", "VARCHAR NOT NULL"),
        ("platform_b", "VARCHAR NOT NULL"),
        ("account_b", "VARCHAR NOT NULL"),
        ("source", "VARCHAR NOT NULL"),
    ),
    ("platform_a", "account_a", "platform_b", "account_b"),
)
INGEST_LOG = Table(
    "ingest_log",
    (
        ("file", "VARCHAR NOT NULL"),
        ("fingerprint", "VARCHAR NOT NULL"),
        ("kind", "VARCHAR NOT NULL"),
        ("platform", "VARCHAR"),
        ("accepted", "BIGINT NOT NULL"),
        ("quarantined", "BIGINT NOT NULL"),
        ("duplicates", "BIGINT NOT NULL"),
        ("seconds", "DOUBLE NOT NULL"),
        ("ingested_at", "TIMESTAMPTZ NOT NULL"),
    ),
)
LINKS = Table(
    "links",
    (
        ("platform_a", "VARCHAR NOT NULL"),
        ("account_a", "VARCHAR NOT NULL"),
        ("platform_b", "VARCHAR NOT NULL"),
        ("account_b", "VARCHAR NOT NULL"),
        ("probability", "DOUBLE NOT NULL"),
        ("rank", "INTEGER NOT NULL"),  # rank of b among a's candidates on platform_b
        ("evidence", "JSON"),  # the strongest signals of the decision
        ("source", "VARCHAR NOT NULL"),  # matcher | identifier
        ("model_version", "VARCHAR NOT NULL"),
        # asserted (at or above the certified threshold) | probable (mutual best below it)
        ("status", "VARCHAR DEFAULT 'asserted'"),
    ),
    ("platform_a", "account_a", "platform_b", "account_b"),
)
PERSONS = Table(
    "persons",
    (
        ("platform", "VARCHAR NOT NULL"),
        ("account", "VARCHAR NOT NULL"),
        ("person", "BIGINT NOT NULL"),
        ("model_version", "VARCHAR NOT NULL"),
    ),
    ("platform", "account"),
)
API_TOKENS = Table(
    "api_tokens",
    (
        ("id", "VARCHAR NOT NULL"),  # short public id, used to list and revoke
        ("name", "VARCHAR"),
        ("token_sha256", "VARCHAR NOT NULL"),  # the token itself is never stored
        ("scopes", "VARCHAR NOT NULL"),  # comma-separated: read, write
        ("created_at", "TIMESTAMPTZ NOT NULL"),
        ("revoked_at", "TIMESTAMPTZ"),
    ),
    ("id",),
)
META = Table("meta", (("key", "VARCHAR PRIMARY KEY"), ("value", "VARCHAR NOT NULL")))

#: Where each stream consumer group stands: the next offset to read per topic partition,
#: written in the same transaction as the events of the batch it follows (exactly once).
#: ``group`` is an SQL keyword, hence ``consumer_group``.
STREAM_OFFSETS = Table(
    "stream_offsets",
    (
        ("consumer_group", "VARCHAR NOT NULL"),
        ("topic", "VARCHAR NOT NULL"),
        ("partition", "INTEGER NOT NULL"),
        ("next_offset", "BIGINT NOT NULL"),
    ),
    ("consumer_group", "topic", "partition"),
)
#: Suppression list: one keyed mark per erased account (``Pseudonymiser.erasure_mark`` of its
#: pseudonym, never the raw id or the pseudonym); events of a marked account are quarantined
#: with reason ``erased`` instead of being stored again.
ERASED_ACCOUNTS = Table(
    "erased_accounts",
    (
        ("platform", "VARCHAR NOT NULL"),
        ("mark", "VARCHAR NOT NULL"),
        ("erased_at", "TIMESTAMPTZ NOT NULL"),
    ),
    ("platform", "mark"),
)
CANONICAL_TABLES: tuple[Table, ...] = (
    META,
    EVENTS,
    ITEMS,
    ACCOUNTS,
    ACCOUNT_IDENTIFIERS,
    KNOWN_LINKS,
    LINKS,
    PERSONS,
    INGEST_LOG,
    API_TOKENS,
    STREAM_OFFSETS,
    ERASED_ACCOUNTS,
)

#: The quarantine lives in its own database file so raw ids of bad rows never mix with the store.
QUARANTINE = Table(
    "quarantine",
    (
        ("file", "VARCHAR NOT NULL"),
        ("fingerprint", "VARCHAR NOT NULL"),
        ("line", "BIGINT NOT NULL"),
        ("kind", "VARCHAR NOT NULL"),  # events | items | links
        ("platform", "VARCHAR"),
        ("field", "VARCHAR"),
        ("reason", "VARCHAR NOT NULL"),
        ("raw", "VARCHAR"),
        ("quarantined_at", "TIMESTAMPTZ NOT NULL"),
    ),
    ("fingerprint", "kind", "line"),
)
