"""Erasure inside saved model versions and reports (the file side of ``crossrec forget``).

Every version under ``models/`` is rewritten, not just the current one: a version can be made
current again, so an old one must not keep an erased account either. Per version:

* ``accounts/`` (profiles): the erased rows are removed and the rows after them move up, which
  keeps profiles sorted by (platform, account) as the linker requires. Whatever holds
  profile rows is renumbered with the same map: the vector indexes' ids (``index/*/*/``),
  the candidate pairs (``link/candidates.npz``) and the matcher's training pairs.
* ``cf/<platform>/``: the account's matrix row, CF factors and seen items.
* ``sequence/``: its vector in ``sequence.npz`` and the known links in ``anchors.json``.
* ``index/<space>/<platform>/``: its vector, removed and compacted away (not just masked).
* ``link/``: candidate pairs with it; the matcher drops its training pairs and is refitted.

Weights that aggregate many accounts (item factors, the sequence network, the CF mappings
between platforms) are kept: they name nobody. A retrain removes any remaining influence.

A directory is rewritten into a sibling (``.NAME.forget-new``) and swapped in with two
renames; :func:`recover` puts back a directory a crash left half swapped.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

Key = tuple[str, str]
_NEW = ".forget-new"
_OLD = ".forget-old"
#: Text files under ``reports/`` whose mentions are redacted in place; other files are removed.
TEXT_SUFFIXES = {".json", ".jsonl", ".html", ".htm", ".csv", ".tsv", ".txt", ".md", ".svg", ".xml"}
REDACTED = "erased"


# -- atomic directory rewrites ---------------------------------------------------------------------
def rewrite_dir(directory: Path, write: Callable[[Path], None]) -> None:
    """Copy ``directory``, let ``write`` change the copy, then swap the copy in.

    Files ``write`` does not touch are carried over, so files other code keeps beside ours
    survive.
    """
    new = directory.with_name(f".{directory.name}{_NEW}")
    old = directory.with_name(f".{directory.name}{_OLD}")
    for leftover in (new, old):
        if leftover.exists():
            shutil.rmtree(leftover)
    shutil.copytree(directory, new)
    write(new)
    os.replace(directory, old)
    os.replace(new, directory)
    shutil.rmtree(old)


def recover(root: Path) -> None:
    """Undo what a crash during :func:`rewrite_dir` left: a half-written copy is removed; a
    directory moved aside but not replaced is put back."""
    if not root.is_dir():
        return
    for path in sorted(root.rglob(f"*{_OLD}"), reverse=True):
        original = path.with_name(path.name[1 : -len(_OLD)])
        if path.is_dir() and not original.exists():
            os.replace(path, original)
        elif path.is_dir():
            shutil.rmtree(path)
    for path in sorted(root.rglob(f"*{_NEW}"), reverse=True):
        if path.is_dir():
            shutil.rmtree(path)


def _atomic_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}{_NEW}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# -- one model version -----------------------------------------------------------------------------
def erase_version(version: Path, keys: set[Key]) -> dict[str, int]:
    """Erase the accounts ``keys`` from one model version directory; returns what was removed
    (``accounts``, ``cf_rows``, ``sequence_vectors``, ``anchors``, ``index_vectors``,
    ``candidate_pairs``, ``matcher_pairs``; zeros left out)."""
    removed: dict[str, int] = {}

    def add(what: str, n: int) -> None:
        if n:
            removed[what] = removed.get(what, 0) + n

    row_map = None
    if (version / "accounts" / "accounts.npz").is_file():
        row_map = _erase_profiles(version / "accounts", keys)
        add("accounts", int((row_map < 0).sum()))
    cf_root = version / "cf"
    if cf_root.is_dir():
        for directory in sorted(p for p in cf_root.iterdir() if p.is_dir()):
            add("cf_rows", _erase_cf(directory, keys))
    if (version / "sequence").is_dir():
        vectors, anchors = _erase_sequence(version / "sequence", keys)
        add("sequence_vectors", vectors)
        add("anchors", anchors)
    moved = row_map is not None and bool((row_map < 0).any())
    for marker in sorted((version / "index").glob("*/*/index.json")):
        add("index_vectors", _erase_index(marker.parent, keys, row_map if moved else None))
    if moved and row_map is not None:
        link = version / "link"
        if (link / "candidates.npz").is_file():
            add("candidate_pairs", _erase_candidates(link, row_map))
        if (link / "matcher" / "matcher.npz").is_file():
            add("matcher_pairs", _erase_matcher(link / "matcher", row_map))
    return removed


def _erase_profiles(directory: Path, keys: set[Key]) -> np.ndarray:
    from crossrec.represent.profiles import AccountProfiles

    profiles = AccountProfiles.load(directory)
    erased, row_map = profiles.erase(keys)
    if (row_map < 0).any():
        rewrite_dir(directory, erased.save)
    return row_map


def _erase_cf(directory: Path, keys: set[Key]) -> int:
    from crossrec.represent.cf import CFModel
    from crossrec.represent.interactions import InteractionMatrix

    if not (directory / "interactions.json").is_file():
        return 0
    inter = InteractionMatrix.load(directory)
    accounts = {a for p, a in keys if p == inter.platform}
    erased, rows = inter.erase(accounts)
    if not len(rows):
        return 0
    model = CFModel.load(directory) if (directory / "cf.json").is_file() else None

    def write(tmp: Path) -> None:
        erased.save(tmp)
        if model is not None:
            model.erase(rows)
            model.save(tmp)

    rewrite_dir(directory, write)
    return len(rows)


def _erase_sequence(directory: Path, keys: set[Key]) -> tuple[int, int]:
    """Account vectors in ``sequence.npz`` and pairs in ``anchors.json`` (read as plain arrays
    and JSON, so that erasure never loads the network)."""
    from crossrec.train import ANCHORS_FILE

    arrays_file, anchors_file = directory / "sequence.npz", directory / ANCHORS_FILE
    arrays: dict[str, np.ndarray] | None = None
    drop = np.zeros(0, dtype=bool)
    if arrays_file.is_file():
        with np.load(arrays_file, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        if "account_names" in arrays and "account_platforms" in arrays:
            drop = _key_mask(arrays["account_platforms"], arrays["account_names"], keys)
    anchors: list[Any] | None = None
    kept: list[Any] = []
    if anchors_file.is_file():
        anchors = json.loads(anchors_file.read_text(encoding="utf-8"))
        kept = [pair for pair in anchors if not any((str(p), str(a)) in keys for p, a in pair)]
    n_anchors = 0 if anchors is None else len(anchors) - len(kept)
    if not drop.any() and not n_anchors:
        return 0, 0

    def write(tmp: Path) -> None:
        if arrays is not None and drop.any():
            rows = len(drop)
            out = {
                k: (v[~drop] if k.startswith("account_") and len(v) == rows else v)
                for k, v in arrays.items()
            }
            np.savez(tmp / arrays_file.name, **out)  # type: ignore[arg-type]
        if n_anchors:
            (tmp / anchors_file.name).write_text(json.dumps(kept) + "\n", encoding="utf-8")

    rewrite_dir(directory, write)
    return int(drop.sum()), n_anchors


def _erase_index(directory: Path, keys: set[Key], row_map: np.ndarray | None) -> int:
    """Remove the accounts' vectors; integer ids are profile rows (renumbered by ``row_map``),
    string ids are account pseudonyms."""
    from crossrec.index import load_index

    index = load_index(directory)
    ids = index.ids
    if ids.dtype.kind in "iu":
        if row_map is None:
            return 0
        gone = np.flatnonzero(row_map < 0)
        removed = index.erase(gone, relabel=row_map)
    else:
        accounts = {a for _, a in keys}
        gone_ids = np.asarray([i for i in ids.tolist() if i in accounts], dtype=str)
        if not len(gone_ids):
            return 0
        removed = index.erase(gone_ids)
    rewrite_dir(directory, index.save)
    return removed


def _erase_candidates(link: Path, row_map: np.ndarray) -> int:
    path = link / "candidates.npz"
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    a, b = arrays["a_rows"], arrays["b_rows"]
    keep = (row_map[a] >= 0) & (row_map[b] >= 0)
    n = len(a)
    out = {k: (v[keep] if v.ndim >= 1 and len(v) == n else v) for k, v in arrays.items()}
    out["a_rows"], out["b_rows"] = row_map[a[keep]], row_map[b[keep]]

    def write(tmp: Path) -> None:
        np.savez(tmp / path.name, **out)

    rewrite_dir(link, write)
    return int((~keep).sum())


def _erase_matcher(directory: Path, row_map: np.ndarray) -> int:
    from crossrec.errors import ModelError
    from crossrec.link.matcher import Matcher

    try:
        matcher = Matcher.load(directory)
    except ModelError:
        # it cannot be refitted here (e.g. saved by another scikit-learn): without it, nothing
        # of its training pairs stays; `crossrec link` trains a new one
        n = int(np.load(directory / "matcher.npz", allow_pickle=False)["y"].size)
        shutil.rmtree(directory)
        return n
    removed = matcher.erase(np.flatnonzero(row_map < 0), relabel=row_map)

    def write(tmp: Path) -> None:
        matcher.save(tmp)

    rewrite_dir(directory, write)
    return removed


def _key_mask(platforms: np.ndarray, accounts: np.ndarray, keys: set[Key]) -> np.ndarray:
    return np.fromiter(
        ((str(p), str(a)) in keys for p, a in zip(platforms, accounts, strict=True)),
        dtype=bool,
        count=len(accounts),
    )


# -- reports ---------------------------------------------------------------------------------------
def erase_reports(reports: Path, accounts: Iterable[str]) -> list[str]:
    """Redact the pseudonyms in text reports (replaced by ``erased``) and remove other report
    files that hold them; returns the files changed, relative to ``reports``."""
    names = sorted(set(accounts))
    if not reports.is_dir() or not names:
        return []
    changed = []
    needles = needle_bytes(names)
    for path in sorted(p for p in reports.rglob("*") if p.is_file()):
        if not file_mentions(path, needles):
            continue
        if path.suffix.lower() in TEXT_SUFFIXES:
            text = path.read_bytes().decode("utf-8", errors="surrogateescape")
            for name in names:
                text = text.replace(name, REDACTED)
            _atomic_bytes(path, text.encode("utf-8", errors="surrogateescape"))
        if path.suffix.lower() not in TEXT_SUFFIXES or file_mentions(path, needles):
            path.unlink()
        changed.append(path.relative_to(reports).as_posix())
    return changed


# -- finding traces --------------------------------------------------------------------------------
def needle_bytes(strings: Iterable[str]) -> list[bytes]:
    """How the strings look on disk: UTF-8 (text, JSON, DuckDB) and UTF-32-LE (numpy's ``<U``
    arrays in .npy/.npz)."""
    out: list[bytes] = []
    for s in strings:
        out += [s.encode("utf-8"), s.encode("utf-32-le")]
    return out


def file_mentions(path: Path, needles: list[bytes]) -> bool:
    """Whether the file's bytes, or the decompressed members of a zip file (.npz), contain
    one of ``needles``."""
    import mmap
    import re
    import zipfile

    if not needles or path.stat().st_size == 0:
        return False
    pattern = re.compile(b"|".join(re.escape(n) for n in needles))
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
        if pattern.search(data):
            return True
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                if info.compress_type != zipfile.ZIP_STORED:
                    with z.open(info) as member:
                        if pattern.search(member.read()):
                            return True
    return False


def find_traces(root: Path, strings: Iterable[str]) -> list[str]:
    """Files under ``root`` whose bytes hold one of ``strings`` (see :func:`file_mentions`),
    relative to ``root``."""
    needles = needle_bytes(strings)
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        if file_mentions(path, needles):
            found.append(path.relative_to(root).as_posix())
    return found
