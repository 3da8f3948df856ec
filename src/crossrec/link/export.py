"""``crossrec export links``: the linker's links written in the company's own account ids.

The store holds pseudonyms only. The caller supplies id lists (:class:`crossrec.idmap.IdMap`);
each link whose two accounts the lists resolve becomes one row

    platform_a, account_a, platform_b, account_b, probability, status, evidence

with raw ids, the calibrated probability, the link's status (``asserted`` or ``probable``) and
its evidence (the strongest signals, as JSON text). A link with an account the lists do not
hold is left out and counted, per platform; nothing is guessed. The file is written to a
temporary name beside ``out`` and renamed, so a reader never sees half a file. The exported
file holds raw ids: it is as sensitive as the event files they came from.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from crossrec.errors import InputError

if TYPE_CHECKING:
    from crossrec.idmap import IdMap
    from crossrec.store.base import Store

COLUMNS = (
    "platform_a",
    "account_a",
    "platform_b",
    "account_b",
    "probability",
    "status",
    "evidence",
)
STATUSES = ("asserted", "probable", "all")
FORMATS = {".csv": "csv", ".parquet": "parquet"}


def output_format(out: Path) -> str:
    """``csv`` or ``parquet`` from the output file's suffix; a one-line error otherwise."""
    fmt = FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise InputError(
            f"--out {out}: the file name must end in .csv or .parquet",
            hint="e.g. --out links.csv",
        )
    if not out.parent.is_dir():
        raise InputError(f"--out {out}: folder {out.parent} does not exist")
    return fmt


def _status_of(table: pa.Table) -> list[str]:
    """Each row's status; links written before the linker kept one are all asserted."""
    if "status" not in table.column_names:
        return ["asserted"] * table.num_rows
    return [s or "asserted" for s in table.column("status").to_pylist()]


def _evidence(text: str | None) -> str:
    """The stored evidence as compact JSON text (``[]`` when there is none)."""
    if not text:
        return "[]"
    return json.dumps(json.loads(text), ensure_ascii=False, separators=(",", ":"))


def export_links(store: Store, ids: IdMap, out: Path, status: str = "asserted") -> dict[str, Any]:
    """Write the links of ``status`` (``asserted``, ``probable`` or ``all``) with raw ids to
    ``out`` (``.csv`` or ``.parquet``); returns the summary.

    Summary keys: ``out``, ``format``, ``status``, ``links`` (links of that status),
    ``written`` (rows in the file), ``left_out`` (links with an account the id lists do not
    resolve), ``unresolved`` (platform -> distinct such accounts), ``ids`` (per platform: the
    id files and how many raw ids they held).
    """
    if status not in STATUSES:
        raise InputError(f"--status {status!r} is not one of {', '.join(STATUSES)}")
    fmt = output_format(out)
    table = store.read("links")
    statuses = _status_of(table)
    rows: list[tuple[Any, ...]] = []
    unresolved: dict[str, set[str]] = {}
    considered = 0
    left_out = 0
    cols = {c: table.column(c).to_pylist() for c in (*COLUMNS[:5], "evidence")}
    for i, st in enumerate(statuses):
        if status != "all" and st != status:
            continue
        considered += 1
        sides = []
        for side in ("a", "b"):
            platform, account = cols[f"platform_{side}"][i], cols[f"account_{side}"][i]
            raw = ids.raw(platform, account)
            if raw is None:
                unresolved.setdefault(platform, set()).add(account)
            sides.append((platform, raw))
        (pa_, ra), (pb, rb) = sides
        if ra is None or rb is None:
            left_out += 1
            continue
        prob = float(cols["probability"][i])
        rows.append((pa_, ra, pb, rb, prob, st, _evidence(cols["evidence"][i])))
    rows.sort(key=lambda r: (r[0], r[2], r[1], r[3]))
    _write_atomic(rows, out, fmt)
    return {
        "out": str(out),
        "format": fmt,
        "status": status,
        "links": considered,
        "written": len(rows),
        "left_out": left_out,
        "unresolved": {p: len(a) for p, a in sorted(unresolved.items())},
        "ids": ids.stats(),
    }


def _write_atomic(rows: list[tuple[Any, ...]], out: Path, fmt: str) -> None:
    fd, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    tmp = Path(name)
    try:
        if fmt == "csv":
            with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
                writer = csv.writer(fh)
                writer.writerow(COLUMNS)
                writer.writerows(rows)
        else:
            os.close(fd)
            import pyarrow.parquet as pq

            columns: list[Any] = list(zip(*rows, strict=True)) if rows else [()] * len(COLUMNS)
            types = [pa.string()] * 4 + [pa.float64(), pa.string(), pa.string()]
            data = pa.table(
                {c: pa.array(v, t) for c, v, t in zip(COLUMNS, columns, types, strict=True)}
            )
            pq.write_table(data, tmp)
        os.chmod(tmp, 0o600)  # raw ids: readable by the owner only, as the key file
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
