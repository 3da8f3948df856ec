"""Record ingest: a batch of canonical event dicts (HTTP API, stream consumer) into the store.

A record is one event as a dict with the canonical keys ``account``, ``item`` (required),
``event``, ``value``, ``timestamp`` and ``event_id``; every other key is kept in ``attrs``
(personal identifier keys named in ``privacy.personal_columns`` are pseudonymised into
``account_identifiers`` instead, as in file ingest).

The rules are the file-ingest rules, run by the same SQL (:func:`crossrec.ingest.validate.
events_sql`): text is trimmed and empty means absent; a value must parse as a finite number;
a timestamp is ISO-8601 (with or without zone; no zone means UTC) or epoch seconds or
milliseconds, inside ``[ingest.timestamp_min, ingest.timestamp_max)``. Records add one rule a
file cannot break: a field's JSON type must fit (ids are strings or integers, value and
timestamp are numbers or strings). Bad records go to the quarantine with their source, number,
field, reason and the raw record as JSON; good ones are pseudonymised and written in one store
transaction, deduplicated by the store's event identity (:mod:`crossrec.store.event_keys`: the
``event_id`` when given, else a digest of platform, account, item, event, value and time), so
an event sent twice, or sent once and ingested once from a file, is stored once.

One :class:`RecordIngestor` keeps its staging database between calls (a batch of 1,000
records costs milliseconds, not the set-up of a database); :meth:`Workspace.ingest_records`
holds one per workspace.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from crossrec import schema
from crossrec.errors import InputError
from crossrec.ingest import validate
from crossrec.ingest.pipeline import check_platform
from crossrec.ingest.readers import staging_connection
from crossrec.ingest.record_fields import Reject, canonical, raw_json
from crossrec.ingest.record_quarantine import Bad, QuarantineWriter, source_fingerprint

if TYPE_CHECKING:
    from crossrec.workspace import Workspace

# the staged batch: the canonical fields as text, the platform, the attributes as JSON text
_STAGED = (*schema.EVENT_FIELDS, "_platform", "_attrs")
_COLUMN_MAP = validate.ColumnMap({f: f for f in schema.EVENT_FIELDS}, ["_platform", "_attrs"])
_RAW_SCHEMA = pa.schema([("_line", pa.int64())] + [(c, pa.string()) for c in _STAGED])
_PSEUDONYM_CACHE = 100_000  # accounts remembered between batches (a stream repeats them)


@dataclass
class RecordSummary:
    """What one batch of records did to the store.

    ``accounts`` are the pseudonyms of the accounts whose valid records were in the batch
    (sorted, distinct): the accounts whose vectors an online update should refresh.
    """

    platform: str
    source: str
    accepted: int
    quarantined: int
    duplicates: int
    accounts: list[str]
    seconds: float
    reasons: dict[str, int] = field(default_factory=dict)
    #: With ``strict``: the bad records of a batch that was therefore not stored, by number.
    rejected: list[Bad] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class MixedResult:
    """Counts of a batch that may span platforms (see :meth:`RecordIngestor.ingest_mixed`)."""

    accepted: int
    quarantined: int
    duplicates: int
    #: ``(platform, pseudonym)`` of the accounts with valid records, sorted, distinct.
    accounts: list[tuple[str, str]]
    reasons: dict[str, int]
    #: With ``strict``: the bad records of a batch that was therefore not stored.
    rejected: list[Bad] = field(default_factory=list)


class RecordIngestor:
    """Ingests batches of event records into one workspace; safe to share between threads
    (calls run one at a time)."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self._lock = threading.Lock()
        self._con: duckdb.DuckDBPyConnection | None = None
        self._spill: Path | None = None
        self._pseud_cache: dict[tuple[str, str], str] = {}
        self._quarantine = QuarantineWriter(ws)
        cfg = ws.config
        self._personal = frozenset(cfg.privacy.personal_columns)
        checked_sql = validate.events_sql(
            _COLUMN_MAP, cfg.ingest.timestamp_min, cfg.ingest.timestamp_max, has_line=True
        )
        # the rules' query read without materialising its result: one statement less a batch
        # (None: run the statement as it is and read its table)
        head, found, query = checked_sql.partition("CREATE TABLE checked AS")
        self._checked_from = f"({query})" if found and not head.strip() else None
        self._checked_sql = checked_sql

    def _connection(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            # a private in-memory database: raw ids never reach the store or the working dir
            self._spill = Path(tempfile.mkdtemp(prefix="crossrec-records-"))
            self._con = staging_connection(self.ws.config.ingest.memory_limit, self._spill)
        return self._con

    def close(self) -> None:
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None
            if self._spill is not None:
                shutil.rmtree(self._spill, ignore_errors=True)
                self._spill = None

    # -- public ---------------------------------------------------------------------------------
    def ingest(
        self,
        platform: str,
        records: Sequence[Any],
        *,
        source: str,
        numbers: Sequence[int] | None = None,
        extra: Callable[[], None] | None = None,
        strict: bool = False,
    ) -> RecordSummary:
        """Validate, quarantine, pseudonymise, dedupe and store a batch of one platform.

        Parameters
        ----------
        platform : str
            Platform of every record.
        records : sequence of dict, length n
            Canonical event records (anything else is quarantined, never raised).
        source : str
            Where the records came from (e.g. ``"http"``), kept with quarantined records.
        numbers : sequence of int, length n, optional
            Each record's number within ``source`` (e.g. stream offsets). When given, a
            record number is quarantined at most once per source (a replay adds nothing);
            by default records are numbered 1..n and each call is quarantined on its own.
        extra : callable, optional
            Run inside the store transaction that writes the events (e.g. to store offsets).
        strict : bool
            All or nothing: a batch with a bad record stores and quarantines nothing; its bad
            records come back in ``rejected`` (the HTTP API's default).

        Raises
        ------
        InputError
            ``platform`` is not a valid platform name, or ``numbers`` does not fit.
        """
        started = time.perf_counter()
        check_platform(platform)
        if numbers is not None and len(numbers) != len(records):
            raise InputError(
                f"{len(numbers)} record numbers for {len(records)} records",
                hint="give one number per record, or none",
            )
        fp = source_fingerprint(source) if numbers is not None else uuid.uuid4().hex
        nums = list(numbers) if numbers is not None else list(range(1, len(records) + 1))
        result = self.ingest_mixed(
            [platform] * len(records),
            records,
            origins=[(source, fp, n) for n in nums],
            extra=extra,
            strict=strict,
        )
        return RecordSummary(
            platform=platform,
            source=source,
            accepted=result.accepted,
            quarantined=result.quarantined,
            duplicates=result.duplicates,
            accounts=[a for _, a in result.accounts],
            seconds=round(time.perf_counter() - started, 6),
            reasons=result.reasons,
            rejected=result.rejected,
        )

    def ingest_mixed(
        self,
        platforms: Sequence[str],
        records: Sequence[Any],
        *,
        origins: Sequence[tuple[str, str, int]],
        bad: Sequence[Bad] = (),
        raws: Sequence[str] | None = None,
        extra: Callable[[], None] | None = None,
        strict: bool = False,
    ) -> MixedResult:
        """Ingest records of several platforms at once (the stream consumer's batch).

        ``platforms[i]`` (already checked by the caller) and ``origins[i]`` = (source,
        quarantine fingerprint, number) belong to ``records[i]``; ``raws[i]``, when given, is
        what the quarantine keeps of it (e.g. the message as received; default: the record
        as JSON). ``bad`` are records the caller already rejected, quarantined with the batch.
        """
        if raws is not None and len(raws) != len(records):
            raise InputError("records and raws must have the same length")

        def raw_of(i: int) -> str:
            return raws[i] if raws is not None else raw_json(records[i])

        with self._lock:
            return self._ingest(platforms, records, origins, list(bad), raw_of, extra, strict)

    # -- steps ----------------------------------------------------------------------------------
    def _ingest(
        self,
        platforms: Sequence[str],
        records: Sequence[Any],
        origins: Sequence[tuple[str, str, int]],
        bad: list[Bad],
        raw_of: Callable[[int], str],
        extra: Callable[[], None] | None,
        strict: bool = False,
    ) -> MixedResult:
        staged, personal = self._stage_rows(platforms, records, origins, bad, raw_of)
        good: pa.Table | None = None
        pseud: dict[tuple[str, str], str] = {}
        suppressed: list[Bad] = []
        idents: list[tuple[str, str, str, str]] = []
        valid = 0
        if staged.num_rows:
            con = self._connection()
            con.register("_in", staged)
            try:
                con.execute("CREATE OR REPLACE TABLE raw AS SELECT * FROM _in")
            finally:
                con.unregister("_in")
            checked = self._check(con)
            lines = checked["_line"].to_pylist()
            plats = checked["_platform"].to_pylist()
            accounts = checked["account_raw"].to_pylist()
            fields = checked["_field"].to_pylist()
            why = checked["_reason"].to_pylist()
            keep: list[bool] = []
            pairs: list[tuple[str, str]] = []
            for line, platform, account, fld, reason in zip(
                lines, plats, accounts, fields, why, strict=True
            ):
                keep.append(reason is None)
                if reason is not None:
                    src, fp, num = origins[line]
                    bad.append(Bad(src, fp, num, platform, fld, reason, raw_of(line)))
                    continue
                pairs.append((platform, account))
                for kind, value in personal.get(line, {}).items():
                    idents.append((platform, account, kind, value))
            valid = len(pairs)
            if valid:
                pseud = self._pseudonyms(set(pairs))
                erased = self._erased(pseud)
                if erased:  # accounts erased before: quarantined as such, never stored again
                    for j, acct in enumerate(zip(plats, accounts, strict=True)):
                        if keep[j] and acct in erased:
                            keep[j] = False
                            src, fp, num = origins[lines[j]]
                            suppressed.append(Bad(src, fp, num, acct[0], "account", "erased", None))
                    pairs = [k for k in pairs if k not in erased]
                    idents = [x for x in idents if (x[0], x[1]) not in erased]
                    pseud = {k: v for k, v in pseud.items() if k not in erased}
                    valid = len(pairs)
            if valid:
                good = _good(checked.filter(pa.array(keep, pa.bool_())), [pseud[k] for k in pairs])
        if strict and bad:  # all or nothing: the caller is told, nothing is kept
            return MixedResult(0, 0, 0, [], {}, sorted(bad, key=lambda b: b.number))
        bad += suppressed
        self._quarantine.write(bad)  # before the store commits: a replayed batch re-adds nothing
        accepted = duplicates = 0
        store = self.ws.store
        with store.transaction():
            if good is not None and good.num_rows:
                first_seq = pa.scalar(store.next_seq(), pa.int64())
                good = good.set_column(
                    good.schema.get_field_index("seq"), "seq", pc.add(good["seq"], first_seq)
                )
                # repeats within the batch or of stored events: the store drops and counts them
                accepted = store.insert_events(
                    pa.RecordBatchReader.from_batches(good.schema, good.to_batches())
                ).inserted
                duplicates = valid - accepted
                store.upsert_accounts(_seen(good))
            if idents:
                store.insert_identifiers(self._identifiers(idents, pseud))
            if extra is not None:
                extra()
        reasons: dict[str, int] = {}
        for b in bad:
            key = b.reason.split(":")[0]
            reasons[key] = reasons.get(key, 0) + 1
        return MixedResult(
            accepted=accepted,
            quarantined=len(bad),
            duplicates=duplicates,
            accounts=sorted({(p, a) for (p, _), a in pseud.items()}),
            reasons=reasons,
        )

    def _stage_rows(
        self,
        platforms: Sequence[str],
        records: Sequence[Any],
        origins: Sequence[tuple[str, str, int]],
        bad: list[Bad],
        raw_of: Callable[[int], str],
    ) -> tuple[pa.Table, dict[int, dict[str, str]]]:
        """Type-check records in Python and lay the others out as text columns (``raw``).

        Records that break a type rule are appended to ``bad``; the personal identifiers of
        the staged ones are returned by record index.
        """
        if len(platforms) != len(records) or len(origins) != len(records):
            raise InputError("records, platforms and origins must have the same length")
        columns: list[list[Any]] = [[] for _ in _RAW_SCHEMA]
        personal: dict[int, dict[str, str]] = {}
        for i, record in enumerate(records):
            src, fp, num = origins[i]
            if not isinstance(record, Mapping):
                bad.append(Bad(src, fp, num, platforms[i], None, "not a JSON object", raw_of(i)))
                continue
            try:
                texts, idents = canonical(record, self._personal)
            except Reject as exc:
                bad.append(Bad(src, fp, num, platforms[i], exc.field, exc.reason, raw_of(i)))
                continue
            columns[0].append(i)
            for j, text in enumerate(texts):  # the six canonical fields, then attrs
                columns[j + 1 if j < 6 else 8].append(text)
            columns[7].append(platforms[i])
            if idents:
                personal[i] = idents
        table = pa.Table.from_arrays(
            [pa.array(col, type=f.type) for col, f in zip(columns, _RAW_SCHEMA, strict=True)],
            schema=_RAW_SCHEMA,
        )
        return table, personal

    def _check(self, con: duckdb.DuckDBPyConnection) -> pa.Table:
        """The rules run over ``raw``: every staged row with its parsed fields, ``_field`` and
        ``_reason`` (NULL for a good row), in staging order."""
        cols = (
            "_row, _line, _platform, account_raw, item, event_type, value, ts, event_id, "
            "_attrs, _field, _reason"
        )
        if self._checked_from is not None:
            return con.sql(
                f"SELECT {cols} FROM {self._checked_from} ORDER BY _row"
            ).to_arrow_table()
        con.execute("DROP TABLE IF EXISTS checked")
        con.execute(self._checked_sql)
        return con.sql(f"SELECT {cols} FROM checked ORDER BY _row").to_arrow_table()

    def _identifiers(
        self, idents: list[tuple[str, str, str, str]], pseud: dict[tuple[str, str], str]
    ) -> pa.Table:
        """(platform, account, kind, value) rows of pseudonymised personal identifiers."""
        ps = self.ws.pseudonymiser
        rows = sorted(
            {
                (p, pseud[(p, raw)], kind, ps.identifier(kind, value))
                for p, raw, kind, value in idents
            }
        )
        return pa.table(
            {
                name: pa.array([r[i] for r in rows], pa.string())
                for i, name in enumerate(("platform", "account", "kind", "value"))
            }
        )

    def _erased(self, pseud: dict[tuple[str, str], str]) -> set[tuple[str, str]]:
        """The (platform, raw account) keys of ``pseud`` whose account was erased (its
        suppression mark is in the store); no work when nothing was ever erased."""
        store = self.ws.store
        if not store.count("erased_accounts"):
            return set()
        keys = sorted(pseud)
        marks = self.ws.pseudonymiser.erasure_marks(pseud[k] for k in keys)
        found = store.erased_among([(k[0], m) for k, m in zip(keys, marks, strict=True)])
        return {k for k, m in zip(keys, marks, strict=True) if (k[0], m) in found}

    def _pseudonyms(self, pairs: set[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """Pseudonyms of distinct (platform, raw account) pairs, remembered between calls."""
        cache = self._pseud_cache
        missing = sorted(k for k in pairs if k not in cache)
        if len(cache) + len(missing) > _PSEUDONYM_CACHE:
            cache.clear()
        ps = self.ws.pseudonymiser
        for platform in sorted({p for p, _ in missing}):  # the keyed state is set up once
            raws = [r for p, r in missing if p == platform]
            for raw, value in zip(raws, ps.accounts(platform, raws), strict=True):
                cache[(platform, raw)] = value
        return {k: cache[k] for k in pairs}

    def quarantine_held(self) -> AbstractContextManager[None]:
        """Keep the quarantine open until the block ends (see :meth:`QuarantineWriter.held`)."""
        return self._quarantine.held()


def _good(valid: pa.Table, accounts: list[str]) -> pa.Table:
    """Canonical event rows (``schema.EVENTS`` columns) of the valid checked rows; ``seq`` is
    still relative to the batch; the store derives the identity where ``event_id`` is NULL."""
    return pa.table(
        {
            "platform": valid["_platform"],
            "account": pa.array(accounts, pa.string()),
            "item": valid["item"],
            "event_type": valid["event_type"],
            "value": valid["value"],
            "ts": valid["ts"],
            "event_id": valid["event_id"],
            "seq": valid["_row"].cast(pa.int64()),
            "attrs": valid["_attrs"],
        }
    )


def _seen(good: pa.Table) -> pa.Table:
    """First and last event time per (platform, account) of a batch."""
    agg = good.group_by(["platform", "account"]).aggregate([("ts", "min"), ("ts", "max")])
    return agg.rename_columns(["platform", "account", "first_seen", "last_seen"])


def ingest_records(
    ws: Workspace,
    platform: str,
    records: Sequence[Any],
    *,
    source: str,
    extra: Callable[[], None] | None = None,
    numbers: Sequence[int] | None = None,
    strict: bool = False,
) -> RecordSummary:
    """Ingest a batch of event records of ``platform`` into ``ws`` (see
    :meth:`RecordIngestor.ingest`; the workspace keeps one ingestor between calls).

    >>> ws.ingest_records("video", [{"account": "u1", "item": "m1"}], source="http")
    ... # doctest: +SKIP
    RecordSummary(platform='video', source='http', accepted=1, quarantined=0, ...)
    """
    return ws.record_ingestor.ingest(
        platform, records, source=source, numbers=numbers, extra=extra, strict=strict
    )
