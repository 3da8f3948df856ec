"""Re-scoring one account's links after new events, with the current matcher, no retraining.

``crossrec link`` saves, beside the model version, its candidate pairs with their
probabilities, the matcher, the CF mappings and the operating threshold. After new events an
account's CF vector (fold-in) and sequence vector change; :class:`OnlineLinker` puts them into
its linkage context, asks the candidate generator for that one row, computes the same signals
the batch run computes, and scores them with the saved matcher. A pair is asserted when its
probability reaches the saved threshold and it is the best pair of both accounts towards the
other's platform (mutual best, against the batch probabilities of the other account); the
persons of the accounts involved are rewritten from the links as they stand. The HTTP service
runs this in a background thread, never on the request path.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from crossrec.link.pipeline import LINK_DIR

if TYPE_CHECKING:
    from crossrec.config import Config
    from crossrec.link.context import LinkContext
    from crossrec.link.mapping import CFMappings
    from crossrec.link.matcher import Matcher
    from crossrec.store.base import Store


class OnlineLinker:
    """The linkage state of one model version, for one account at a time."""

    def __init__(
        self,
        ctx: LinkContext,
        mappings: CFMappings | None,
        matcher: Matcher,
        threshold: float | None,
        anchors: np.ndarray,
        best: dict[tuple[int, int], list[tuple[float, int]]],
        version: str,
    ) -> None:
        self.ctx = ctx
        self.mappings = mappings
        self.matcher = matcher
        self.threshold = threshold
        self.anchors = anchors
        #: (profile row, other platform code) -> its two best batch (probability, partner)
        self.best = best
        self.version = version
        #: accounts re-scored since load (for metrics and tests)
        self.rescored = 0
        self._lock = threading.Lock()

    @classmethod
    def load(cls, model_dir: Path, store: Store, config: Config) -> OnlineLinker | None:
        """The linker of a model version; None when ``crossrec link`` has not run on it."""
        from crossrec.link.candidates import encoder_anchors
        from crossrec.link.context import LinkContext
        from crossrec.link.mapping import CFMappings
        from crossrec.link.matcher import Matcher

        directory = model_dir / LINK_DIR
        if not (directory / "link.json").is_file():
            return None
        summary = json.loads((directory / "link.json").read_text("utf-8"))
        ctx = LinkContext.load(model_dir, store, config)
        mappings = (
            CFMappings.load(directory / "mappings") if (directory / "mappings").is_dir() else None
        )
        matcher = Matcher.load(directory / "matcher")
        with np.load(directory / "candidates.npz", allow_pickle=False) as z:
            a, b, prob = z["a_rows"], z["b_rows"], z["probability"]
        best: dict[tuple[int, int], list[tuple[float, int]]] = {}
        codes = ctx.platform_code
        for x, y, p in zip(a.tolist(), b.tolist(), prob.tolist(), strict=True):
            for key, partner in (((x, int(codes[y])), y), ((y, int(codes[x])), x)):
                top = best.setdefault(key, [])
                top.append((p, partner))
                if len(top) > 2:
                    top.sort(reverse=True)
                    del top[2:]
        return cls(
            ctx,
            mappings,
            matcher,
            summary.get("threshold"),
            encoder_anchors(ctx),
            best,
            model_dir.name,
        )

    def row(self, platform: str, account: str) -> int | None:
        return self.ctx.profiles.row(platform, account)

    def warm(self) -> None:
        """Open every index the candidate generator searches (read from the model version,
        or built when it lacks one), so that no request pays for it."""
        from crossrec.link.candidates import SPACES

        for space in SPACES:
            for platform in self.ctx.platforms:
                self.ctx.index(space, platform)

    def update_vectors(
        self,
        platform: str,
        account: str,
        *,
        cf: np.ndarray | None = None,
        sequence: np.ndarray | None = None,
    ) -> int | None:
        """Put an account's refreshed vectors into the context; returns its row (None when the
        account is newer than the model: it is linked by the next ``crossrec link``)."""
        r = self.row(platform, account)
        if r is None:
            return None
        prof = self.ctx.profiles
        cache = self.ctx._cache
        with self._lock:
            for space, vector, table in (
                ("cf", cf, prof.cf),
                ("sequence", sequence, prof.sequence),
            ):
                if vector is None or table.shape[1] != len(vector):
                    continue
                table[r] = vector
                index = cache.get(("index", space, platform))
                if index is not None:  # the account's entry moves with it
                    index.upsert(np.asarray(vector, np.float32)[None, :], np.asarray([r], np.int64))
                inverse = cache.get(("inverse_norms", space))
                if inverse is not None:  # the one structure derived from these vectors
                    norm = float(np.linalg.norm(table[r]))
                    inverse[r] = 1.0 / norm if norm > 0 else 0.0
            # everything else the context derived (item overlaps, rhythms, days, alignment)
            # does not depend on these vectors and stays: rebuilding it took ~1.5 s an event
        return r

    def rescore(self, platform: str, account: str) -> pa.Table | None:
        """The account's asserted links after re-scoring its candidates (``links`` rows), or
        None when the account is unknown to this model or no threshold was chosen."""
        from crossrec.link.candidates import generate_candidates
        from crossrec.link.features import matcher_view
        from crossrec.link.signals import compute_signals, evidence

        r = self.row(platform, account)
        if r is None or self.threshold is None:
            return None
        ctx = self.ctx
        with self._lock:
            first = generate_candidates(ctx, self.mappings, np.asarray([r]))
            mine = (first.a_rows == r) | (first.b_rows == r)
            if not mine.any():
                return _links_table([], self.version)
            # The matcher compares a pair with the other candidates of both its accounts
            # (relative signals), so the partners' candidate lists are scored too.
            partners = np.where(first.a_rows == r, first.b_rows, first.a_rows)[mine]
            cands = generate_candidates(ctx, self.mappings, np.concatenate([[r], partners]))
            a, b = cands.a_rows, cands.b_rows
            X, names = compute_signals(ctx, self.mappings, a, b, cands.ranks)
            Xm, m_names = matcher_view(ctx, a, b, X, names, self.anchors)
            cols = [m_names.index(n) for n in self.matcher.feature_names]
            keep = np.flatnonzero((a == r) | (b == r))
            a, b, X = a[keep], b[keep], X[keep]
            prob = self.matcher.predict_proba(Xm[keep][:, cols])
        self.rescored += 1
        ident = np.nan_to_num(X[:, names.index("identifiers_equal")]) > 0
        prob = np.where(ident, 1.0, prob)
        other = np.where(a == r, b, a)
        codes = ctx.platform_code
        rows: list[dict[str, Any]] = []
        for q in np.unique(codes[other]):
            sel = np.flatnonzero(codes[other] == q)
            i = sel[int(np.argmax(prob[sel]))]
            o = int(other[i])
            # o's best batch pair towards r's platform with another account than r
            rival = max(
                (p for p, partner in self.best.get((o, int(codes[r])), []) if partner != r),
                default=-1.0,
            )
            if not (ident[i] or (prob[i] >= self.threshold and prob[i] >= rival)):
                continue
            order = np.argsort(-prob[sel], kind="stable")
            rank = int(np.flatnonzero(sel[order] == i)[0]) + 1
            ev = (
                [
                    {
                        "signal": "identifiers_equal",
                        "value": 1.0,
                        "text": "they share a pseudonymised identifier",
                    }
                ]
                if ident[i]
                else evidence(names, X[i])
            )
            rows.append(
                {
                    "platform_a": str(ctx.profiles.platform[a[i]]),
                    "account_a": str(ctx.profiles.account[a[i]]),
                    "platform_b": str(ctx.profiles.platform[b[i]]),
                    "account_b": str(ctx.profiles.account[b[i]]),
                    "probability": round(float(prob[i]), 6),
                    "rank": rank,
                    "evidence": json.dumps(ev, sort_keys=True),
                    "source": "identifier" if ident[i] else "matcher",
                    "status": "asserted",
                }
            )
        return _links_table(rows, self.version)


def _links_table(rows: list[dict[str, Any]], version: str) -> pa.Table:
    from crossrec import schema

    names = schema.LINKS.column_names
    data = {n: [row[n] for row in rows] for n in names if n != "model_version"}
    data["model_version"] = [version] * len(rows)
    types = {"probability": pa.float64(), "rank": pa.int32()}
    return pa.table({n: pa.array(data[n], types.get(n, pa.string())) for n in names})


def relink_account(
    linker: OnlineLinker, store: Store, platform: str, account: str
) -> pa.Table | None:
    """Re-score an account and write its new asserted links: its old ones go, and the other
    account of each new link loses its previous link towards this platform (one account per
    platform per person). Returns the new links (None when nothing could be re-scored)."""
    table = linker.rescore(platform, account)
    if table is not None:
        write_links(store, platform, account, table, linker.version)
    return table


def write_links(store: Store, platform: str, account: str, table: pa.Table, version: str) -> None:
    """Write an account's re-scored links (:meth:`OnlineLinker.rescore`): its old ones go,
    and the other account of each new link loses its previous link towards this platform;
    the persons of every account involved are rewritten from the links as they stand."""
    remove: list[tuple[str, str, str | None]] = [(platform, account, None)]
    for row in table.to_pylist():
        mine_a = (row["platform_a"], row["account_a"]) == (platform, account)
        other = (
            (row["platform_b"], row["account_b"])
            if mine_a
            else (row["platform_a"], row["account_a"])
        )
        remove.append((other[0], other[1], platform))
    # the persons these accounts belong to before the change: they may merge or split
    touched = set().union(*(person_of(store, p, a) for p, a, _ in remove))
    store.update_links(remove, table)
    refresh_persons(store, touched, version)


def link_partners(table: pa.Table, platform: str, account: str) -> list[tuple[str, str, float]]:
    """(platform, account, probability) of the other account of each of ``table``'s links."""
    partners = []
    for row in table.to_pylist():
        side = "b" if (row["platform_a"], row["account_a"]) == (platform, account) else "a"
        partners.append((row[f"platform_{side}"], row[f"account_{side}"], row["probability"]))
    return partners


def person_of(store: Store, platform: str, account: str) -> set[tuple[str, str]]:
    """The accounts connected to this one by the links as they stand (itself included)."""
    from crossrec.link.query import linked_accounts

    _, links, known = store.person_rows(platform, account)
    return linked_accounts((platform, account), links, known)


def refresh_persons(store: Store, accounts: set[tuple[str, str]], version: str) -> None:
    """Rewrite the ``persons`` rows of ``accounts`` (every account whose person may have
    changed) from the links as they stand: each connected group of two or more accounts is
    one person, keeping the id most of its accounts had (a new id when none is left), and an
    account left alone has no row."""
    old: dict[tuple[str, str], int] = {}
    groups: list[set[tuple[str, str]]] = []
    done: set[tuple[str, str]] = set()
    from crossrec.link.query import linked_accounts

    for key in sorted(accounts):
        if key in done:
            continue
        persons, links, known = store.person_rows(*key)  # one walk gives ids and group
        for r in persons.to_pylist():
            old[(r["platform"], r["account"])] = int(r["person"])
        group = linked_accounts(key, links, known)
        done |= group
        groups.append(group)
    fresh: int | None = None  # a new id is rare: the persons table is read only then
    taken: set[int] = set()
    rows: list[dict[str, Any]] = []
    for group in sorted(groups, key=lambda g: (-len(g), sorted(g))):
        if len(group) < 2:
            continue
        votes: dict[int, int] = {}
        for member in group:
            if member in old and old[member] not in taken:
                votes[old[member]] = votes.get(old[member], 0) + 1
        person = min(votes, key=lambda i: (-votes[i], i)) if votes else None
        if person is None:
            if fresh is None:
                ids = store.read("persons", columns=["person"]).column("person").to_pylist()
                fresh = max([*ids, *taken], default=-1) + 1
            person, fresh = fresh, fresh + 1
        taken.add(person)
        rows += [
            {"platform": p, "account": a, "person": person, "model_version": version}
            for p, a in sorted(group)
        ]
    from crossrec import schema

    names = schema.PERSONS.column_names
    types = {"person": pa.int64()}
    table = pa.table({n: pa.array([r[n] for r in rows], types.get(n, pa.string())) for n in names})
    store.replace_persons(sorted(done | accounts), table)
