"""``Workspace``: the one Python API that the CLI and the HTTP layer both call.

A workspace is a directory holding ``crossrec.toml`` (typed config), ``crossrec.duckdb`` (the
store), ``quarantine.duckdb`` (bad input rows, raw, kept apart from the store), ``models/``
and ``reports/``. Heavy modules are imported inside the methods that need them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crossrec.config import CONFIG_FILE, DEFAULT_CONFIG_TOML, Config
from crossrec.errors import WorkspaceError
from crossrec.privacy import SECRET_ENV, Pseudonymiser, create_key_file, load_key

if TYPE_CHECKING:
    from crossrec.ingest.pipeline import IngestSummary
    from crossrec.ingest.quarantine import Quarantine
    from crossrec.ingest.records import RecordIngestor, RecordSummary
    from crossrec.progress import ProgressHook
    from crossrec.store import Store

STORE_FILE = "crossrec.duckdb"
QUARANTINE_FILE = "quarantine.duckdb"


class Workspace:
    """An initialised workspace directory.

    >>> ws = Workspace.init(tmp_path)          # doctest: +SKIP
    >>> ws.ingest_events("video", Path("events.csv"))  # doctest: +SKIP
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).resolve()
        if not (self.root / CONFIG_FILE).is_file() or not (self.root / STORE_FILE).is_file():
            raise WorkspaceError(
                f"{self.root} is not a crossrec workspace",
                hint=f"create one with `crossrec init --workspace {self.root}`",
            )
        self.config = Config.load(self.root / CONFIG_FILE)
        self._store: Store | None = None
        self._pseudonymiser: Pseudonymiser | None = None
        self._record_ingestor: RecordIngestor | None = None

    # -- creation ----------------------------------------------------------------------------
    @classmethod
    def init(cls, root: Path | str) -> Workspace:
        """Create a workspace in ``root`` (made if missing); an existing one is reused."""
        from crossrec.store import open_store

        root = Path(root).resolve()
        if root.exists() and not root.is_dir():
            raise WorkspaceError(f"{root} exists and is not a directory")
        root.mkdir(parents=True, exist_ok=True)
        config_path = root / CONFIG_FILE
        if not config_path.exists():
            config_path.write_text(DEFAULT_CONFIG_TOML, encoding="utf-8")
        config = Config.load(config_path)
        (root / "models").mkdir(exist_ok=True)
        (root / "reports").mkdir(exist_ok=True)
        key_file = _key_path(root, config)
        import os

        if not os.environ.get(SECRET_ENV) and not key_file.exists():
            create_key_file(key_file)
        store_path = root / STORE_FILE
        open_store(store_path, create=not store_path.exists()).close()
        return cls(root)

    # -- resources ---------------------------------------------------------------------------
    @property
    def store(self) -> Store:
        if self._store is None:
            from crossrec.store import open_store

            self._store = open_store(
                self.root / STORE_FILE, memory_limit=self.config.ingest.memory_limit
            )
        return self._store

    @property
    def pseudonymiser(self) -> Pseudonymiser:
        if self._pseudonymiser is None:
            self._pseudonymiser = Pseudonymiser(load_key(_key_path(self.root, self.config)))
        return self._pseudonymiser

    def quarantine(self) -> Quarantine:
        from crossrec.ingest.quarantine import Quarantine

        return Quarantine(self.root / QUARANTINE_FILE)

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    def close(self) -> None:
        if self._record_ingestor is not None:
            self._record_ingestor.close()
            self._record_ingestor = None
        if self._store is not None:
            self._store.close()
            self._store = None

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- ingest ------------------------------------------------------------------------------
    def ingest_events(
        self,
        platform: str,
        events: Path,
        *,
        items: Path | None = None,
        columns: dict[str, str] | None = None,
        fmt: str = "auto",
        progress: ProgressHook | None = None,
    ) -> list[IngestSummary]:
        """Ingest an events file (and optionally an items file) for ``platform``."""
        from crossrec.ingest.pipeline import Ingestor

        ingestor = Ingestor(self, progress=progress)
        summaries = [ingestor.events(platform, events, columns=columns or {}, fmt=fmt)]
        if items is not None:
            summaries.append(ingestor.items(platform, items, columns=columns or {}, fmt=fmt))
        return summaries

    def ingest_items(
        self,
        platform: str,
        items: Path,
        *,
        columns: dict[str, str] | None = None,
        fmt: str = "auto",
        progress: ProgressHook | None = None,
    ) -> IngestSummary:
        from crossrec.ingest.pipeline import Ingestor

        return Ingestor(self, progress=progress).items(
            platform, items, columns=columns or {}, fmt=fmt
        )

    def ingest_links(
        self, path: Path, *, fmt: str = "auto", progress: ProgressHook | None = None
    ) -> IngestSummary:
        from crossrec.ingest.pipeline import Ingestor

        return Ingestor(self, progress=progress).links(path, fmt=fmt)

    @property
    def record_ingestor(self) -> RecordIngestor:
        """The workspace's record ingestor (its staging database is set up once)."""
        if self._record_ingestor is None:
            from crossrec.ingest.records import RecordIngestor

            self._record_ingestor = RecordIngestor(self)
        return self._record_ingestor

    def ingest_records(
        self,
        platform: str,
        records: list[dict[str, Any]],
        *,
        source: str,
        extra: Callable[[], None] | None = None,
        numbers: Sequence[int] | None = None,
        strict: bool = False,
    ) -> RecordSummary:
        """Ingest a batch of canonical event records (``account``, ``item``, ``event``,
        ``value``, ``timestamp``, ``event_id``; other keys kept as attributes) with the
        file-ingest rules, in one store transaction; bad records go to the quarantine with
        ``source`` and their number (with ``strict``, a batch with a bad record is not kept
        at all: see ``RecordSummary.rejected``). See :mod:`crossrec.ingest.records`."""
        from crossrec.ingest.records import ingest_records

        return ingest_records(
            self, platform, records, source=source, extra=extra, numbers=numbers, strict=strict
        )

    # -- inspection ----------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """``{"platforms": {NAME: {"accounts", "items", "events"}}, "quarantined",
        "duplicates", "known_links"}``."""
        per = self.store.platform_stats()
        return {
            "platforms": {
                name: {"accounts": s.accounts, "items": s.items, "events": s.events}
                for name, s in per.items()
            },
            "quarantined": self.quarantine().count(),
            "duplicates": self.store.duplicates_total(),
            "known_links": self.store.count("known_links"),
        }

    # -- recommendation ----------------------------------------------------------------------
    def recommend(self, platform: str, raw_id: str, k: int = 10) -> dict[str, Any]:
        """``{"platform", "account", "items": [{"item", "score", "reason"}], "model_version"}``;
        an account the store does not know gets popular items (the reason says so)."""
        from crossrec.recommend.service import recommend_json

        return recommend_json(self, platform, raw_id, k)

    def account_id(self, platform: str, raw_id: str) -> str:
        """The stored pseudonym of a raw account id (commands take raw ids), after the
        identity rule (:func:`crossrec.identity.normalize_id`: ``"  u42 "`` is ``u42``); an
        id the rule refuses raises :class:`~crossrec.errors.InvalidIdError`."""
        from crossrec.identity import normalize_id

        return self.pseudonymiser.account(platform, normalize_id(raw_id, "account"))

    def reader(self) -> Workspace:
        """A view of this workspace for reads from another thread (the HTTP service's
        request threads): same config and key, its store on a cursor of this one's, so its
        reads see committed data and never wait on a write in progress here."""
        view = Workspace(self.root)  # every attribute set up as for any workspace
        view.config = self.config
        view._store = self.store.cursor()
        view._pseudonymiser = self.pseudonymiser
        return view

    # -- report ------------------------------------------------------------------------------
    def report(self, output: Path | str | None = None) -> Path:
        """Write the self-contained HTML report (``reports/report-<UTC timestamp>.html``, or
        ``output``) and return its path. See :mod:`crossrec.report`."""
        from crossrec.report import build_report

        return build_report(self, output)

    # -- erasure -----------------------------------------------------------------------------
    def forget(self, platform: str, raw_id: str, *, person: bool = False) -> dict[str, Any]:
        """Erase an account (with ``person``, every account linked to it) from the store, the
        quarantine, every model version and the reports; ``{"deleted_until", "accounts":
        [[platform, pseudonym], ...], ...}``. Raises ``NotFoundError`` for an account the
        store does not know. The store is closed and replaced (reopened on next use): views
        from :meth:`reader` must be made again. See :mod:`crossrec.forget`."""
        from crossrec.forget import forget

        return forget(self, platform, raw_id, person=person)


def _key_path(root: Path, config: Config) -> Path:
    path = Path(config.privacy.key_file).expanduser()
    return path if path.is_absolute() else root / path
