"""Gather what ``crossrec report`` shows, section by section, and write the page.

Every section reads what earlier commands left in the workspace (the store, the quarantine,
``reports/evaluation/*.json``, the current model) and, when its data is missing or cannot be
read, carries a note saying which command produces it instead. Nothing here trains or
evaluates anything, so a report takes seconds.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from crossrec.errors import CrossrecError, InputError

if TYPE_CHECKING:
    from crossrec.workspace import Workspace

#: Most accounts drawn on the account map (a seeded sample of the model's accounts).
MAP_SAMPLE = 5_000
EVALUATION_DIR = "evaluation"
_METRIC = re.compile(r"^[A-Za-z_]+@\d+$")


@dataclass
class PlatformOverview:
    """One platform's data in the store.

    ``events_per_account`` is ``(accounts,)`` int64; ``first_ts``/``last_ts`` are None when
    the platform's events carry no timestamps.
    """

    name: str
    accounts: int
    items: int
    events: int
    first_ts: datetime | None
    last_ts: datetime | None
    events_per_account: np.ndarray
    quarantined: int = 0


@dataclass
class Overview:
    platforms: list[PlatformOverview]
    known_links: dict[tuple[str, str], int]
    asserted_links: int
    duplicates: int
    #: Quarantined rows per (kind, platform or "" for files without one, e.g. links).
    quarantined: dict[tuple[str, str], int] = field(default_factory=dict)


@dataclass
class AccountMap:
    """A 2-D PCA projection of a sample of the current model's sequence vectors.

    ``xy`` is ``(m, 2)`` float64 and ``platform`` ``(m,)`` str, ``m <= MAP_SAMPLE``.
    """

    xy: np.ndarray
    platform: np.ndarray
    n_accounts: int
    explained: tuple[float, float]
    model_version: str


@dataclass
class RecommendEvaluation:
    """One ``recommend-<platform>*.json``: ``methods`` maps ``crossrec`` and each baseline to
    its ``{metric@k: value}``; ``metrics`` is the metric order found in the file."""

    file: str
    platform: str
    label: str | None
    k: int | None
    n_accounts: int | None
    metrics: list[str]
    methods: dict[str, dict[str, float | None]]
    model_version: str | None = None


@dataclass
class ReportData:
    """Everything the page shows; a section is None with a note in ``notes`` when missing."""

    workspace: str
    generated_at: datetime
    overview: Overview | None = None
    link_eval: dict[str, Any] | None = None
    recommend: list[RecommendEvaluation] = field(default_factory=list)
    account_map: AccountMap | None = None
    model: dict[str, Any] | None = None
    link_summary: dict[str, Any] | None = None
    #: section key → sentences shown in place of (or beside) the section's figures.
    notes: dict[str, list[str]] = field(default_factory=dict)

    def note(self, section: str, text: str) -> None:
        self.notes.setdefault(section, []).append(text)


# -- gathering --------------------------------------------------------------------------------
def gather(ws: Workspace) -> ReportData:
    """Read every section's data from the workspace ``ws``."""
    data = ReportData(workspace=str(ws.root), generated_at=datetime.now(UTC))
    _gather_overview(ws, data)
    _gather_model(ws, data)
    _gather_link_eval(ws, data)
    _gather_recommend(ws, data)
    _gather_account_map(ws, data)
    return data


def _gather_overview(ws: Workspace, data: ReportData) -> None:
    import pyarrow.compute as pc

    try:
        store = ws.store
        stats = store.platform_stats()
        activity = store.account_activity()
        links = store.read("known_links", columns=["platform_a", "platform_b"])
        asserted = store.count("links")
        duplicates = store.duplicates_total()
    except CrossrecError as exc:
        data.note("overview", f"The store cannot be read: {exc}")
        return
    if not stats:
        data.note(
            "overview",
            "The store holds no data yet: run `crossrec ingest --platform NAME --events FILE`.",
        )
    quarantined = _quarantine_counts(ws, data)
    platforms = []
    for name, s in stats.items():
        rows = activity.filter(pc.equal(activity["platform"], name))
        first = pc.min(rows["first_ts"]).as_py() if rows.num_rows else None
        last = pc.max(rows["last_ts"]).as_py() if rows.num_rows else None
        platforms.append(
            PlatformOverview(
                name=name,
                accounts=s.accounts,
                items=s.items,
                events=s.events,
                first_ts=first,
                last_ts=last,
                events_per_account=rows["events"].to_numpy().astype(np.int64),
                quarantined=sum(n for (_, p), n in quarantined.items() if p == name),
            )
        )
    pairs: dict[tuple[str, str], int] = {}
    counted = links.group_by(["platform_a", "platform_b"]).aggregate([("platform_a", "count")])
    for row in counted.to_pylist():  # one row per platform pair and direction
        a, b = row["platform_a"], row["platform_b"]
        key = (min(a, b), max(a, b))
        pairs[key] = pairs.get(key, 0) + int(row["platform_a_count"])
    data.overview = Overview(
        platforms=platforms,
        known_links=dict(sorted(pairs.items())),
        asserted_links=asserted,
        duplicates=duplicates,
        quarantined=quarantined,
    )


def _quarantine_counts(ws: Workspace, data: ReportData) -> dict[tuple[str, str], int]:
    """Quarantined rows per (kind, platform), read without writing to the quarantine file."""
    import duckdb

    from crossrec.workspace import QUARANTINE_FILE

    path = ws.root / QUARANTINE_FILE
    if not path.is_file():
        return {}
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        data.note("overview", f"The quarantine cannot be read: {str(exc).splitlines()[0]}")
        return {}
    try:
        rows = con.execute(
            "SELECT kind, coalesce(platform, ''), count(*) FROM quarantine GROUP BY ALL "
            "ORDER BY 1, 2"
        ).fetchall()
    except duckdb.Error:  # a quarantine file that never received a row has no table
        rows = []
    finally:
        con.close()
    return {(str(k), str(p)): int(n) for k, p, n in rows}


def _gather_model(ws: Workspace, data: ReportData) -> None:
    from crossrec.link.pipeline import LINK_DIR
    from crossrec.models import ModelRegistry

    registry = ModelRegistry(ws.models_dir)
    version = registry.current()
    if version is None:
        data.note("model", "No trained model yet: run `crossrec train`.")
        return
    try:
        data.model = registry.metadata(version)
    except CrossrecError as exc:
        data.note("model", f"{exc}; run `crossrec train` again.")
        return
    summary = registry.root / version / LINK_DIR / "link.json"
    if summary.is_file():
        data.link_summary = _read_json(summary, data, "model")
    else:
        data.note("model", f"Model {version} has not linked accounts yet: run `crossrec link`.")


def _gather_link_eval(ws: Workspace, data: ReportData) -> None:
    from crossrec.evaluate.link_eval import LINK_EVAL_FILE

    path = ws.reports_dir / LINK_EVAL_FILE
    hint = (
        "No linkage evaluation yet: run `crossrec evaluate link --truth FILE` after "
        "`crossrec train` and `crossrec link` (FILE: platform_a,account_a,platform_b,account_b "
        "of pairs known to be the same person)."
    )
    if not path.is_file():
        data.note("link", hint)
        return
    doc = _read_json(path, data, "link")
    if doc is None:
        return
    if not isinstance(doc, dict) or "baselines" not in doc:
        data.note("link", f"{path.name} is not a linkage evaluation: " + hint)
        return
    data.link_eval = doc
    details = doc.get("details") or {}
    evaluated = details.get("model_version")
    current = (data.model or {}).get("version")
    if evaluated and current and evaluated != current:
        data.note(
            "link",
            f"These figures are for model {evaluated}; the current model is {current}: "
            "run `crossrec link` and `crossrec evaluate link` again to refresh them.",
        )
    if not details:
        data.note("link", "This evaluation file has no details for the plots: " + hint)


def _gather_recommend(ws: Workspace, data: ReportData) -> None:
    folder = ws.reports_dir / EVALUATION_DIR
    files = sorted(folder.glob("recommend-*.json")) if folder.is_dir() else []
    if not files:
        data.note(
            "recommend",
            "No recommendation evaluation yet: run `crossrec evaluate recommend --platform P "
            "--test FILE` (FILE: account,item pairs held out of the ingested data; it writes "
            "reports/evaluation/recommend-<platform>.json).",
        )
    for path in files:
        doc = _read_json(path, data, "recommend")
        if doc is None:
            continue
        try:
            data.recommend.append(parse_recommend_evaluation(doc, path.name))
        except InputError as exc:
            data.note("recommend", str(exc))


def parse_recommend_evaluation(doc: dict[str, Any], name: str) -> RecommendEvaluation:
    """Read one recommendation evaluation document (any ``metric@k`` keys)."""
    if not isinstance(doc, dict):
        raise InputError(f"{name}: not a JSON object; run `crossrec evaluate recommend` again")
    metrics = [k for k, v in doc.items() if _METRIC.match(k) and _number(v) is not None]
    if not metrics:
        raise InputError(
            f"{name}: holds no metric@k values; run `crossrec evaluate recommend` again"
        )
    methods: dict[str, dict[str, float | None]] = {"crossrec": _values(doc, metrics)}
    for base, values in (doc.get("baselines") or {}).items():
        if isinstance(values, dict):
            methods[str(base)] = _values(values, metrics)
    k = _number(doc.get("k"))
    n = _number(doc.get("n_accounts"))
    return RecommendEvaluation(
        file=name,
        platform=str(doc.get("platform", name.removeprefix("recommend-").removesuffix(".json"))),
        label=str(doc["label"]) if doc.get("label") else None,
        k=None if k is None else int(k),
        n_accounts=None if n is None else int(n),
        metrics=metrics,
        methods=methods,
        model_version=str(doc["model_version"]) if doc.get("model_version") else None,
    )


def _values(doc: dict[str, Any], metrics: list[str]) -> dict[str, float | None]:
    return {m: _number(doc.get(m)) for m in metrics}


def _number(v: Any) -> float | None:
    """``v`` as a float when it is a JSON number (not a boolean, not NaN), else None."""
    if isinstance(v, int | float) and not isinstance(v, bool) and v == v:
        return float(v)
    return None


def _gather_account_map(ws: Workspace, data: ReportData) -> None:
    from crossrec.models import ModelRegistry

    version = ModelRegistry(ws.models_dir).current()
    if version is None:
        data.note("map", "No account vectors yet: run `crossrec train`.")
        return
    try:
        data.account_map = account_map(
            ws.models_dir / version / "accounts", version, seed=ws.config.train.seed
        )
    except CrossrecError as exc:
        data.note("map", str(exc))


def account_map(
    directory: Path, version: str, *, seed: int, sample: int = MAP_SAMPLE
) -> AccountMap:
    """PCA of a seeded sample of at most ``sample`` accounts' sequence vectors.

    Only the ``platform`` and ``sequence`` arrays are read from the profiles file, so a
    model with millions of accounts does not load its other profile arrays.
    """
    from sklearn.decomposition import PCA

    from crossrec.errors import ModelError
    from crossrec.represent.profiles import _ARRAYS

    path = directory / _ARRAYS
    if not path.is_file():
        raise ModelError(
            f"model {version} holds no account vectors", hint="run `crossrec train` again"
        )
    with np.load(path, allow_pickle=False) as arrays:
        platform = arrays["platform"]
        vectors = arrays["sequence"]
    n = int(platform.shape[0])
    if n < 3 or vectors.ndim != 2 or vectors.shape[1] < 2:
        raise ModelError(
            f"model {version} has too few accounts or dimensions to draw a map "
            f"({n} accounts, vectors of shape {vectors.shape})",
            hint="ingest more accounts and run `crossrec train`",
        )
    rows = np.arange(n)
    if n > sample:
        rows = np.sort(np.random.default_rng(seed).choice(n, sample, replace=False))
    x = np.asarray(vectors[rows], dtype=np.float64)
    pca = PCA(n_components=2, svd_solver="full", random_state=seed)
    xy = pca.fit_transform(x)
    ratio = pca.explained_variance_ratio_
    return AccountMap(
        xy=xy,
        platform=platform[rows].astype(str),
        n_accounts=n,
        explained=(float(ratio[0]), float(ratio[1])),
        model_version=version,
    )


def _read_json(path: Path, data: ReportData, section: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        data.note(section, f"{path.name} cannot be read ({exc}); produce it again.")
        return None


# -- writing ----------------------------------------------------------------------------------
def report_path(ws: Workspace, output: Path | str | None, at: datetime) -> Path:
    """``reports/report-<UTC timestamp>.html``, or ``output`` (a file, or a folder to put the
    default name in)."""
    name = f"report-{at.strftime('%Y%m%dT%H%M%SZ')}.html"
    if output is None:
        return ws.reports_dir / name
    path = Path(output).expanduser()
    return path / name if path.is_dir() else path


def build_report(ws: Workspace, output: Path | str | None = None) -> Path:
    """Write the workspace's HTML report and return its path.

    Parameters
    ----------
    ws : Workspace
        The workspace to report on; nothing in it is modified except the report file.
    output : path, optional
        Where to write; default ``reports/report-<UTC timestamp>.html``.
    """
    from crossrec.report.html import render

    data = gather(ws)
    page = render(data)
    path = report_path(ws, output, data.generated_at).resolve()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(page, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        raise InputError(
            f"cannot write the report to {path}: {exc.strerror or exc}",
            hint="choose another --output",
        ) from None
    return path
