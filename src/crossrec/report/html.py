"""The report page: one HTML file with inline CSS and figures embedded as data URIs.

It references nothing outside itself (no scripts, fonts, style sheets or links), so it reads
the same offline, attached to an e-mail or archived. Every text that comes from the workspace
is escaped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from html import escape
from typing import Any

import numpy as np

from crossrec.report import plots
from crossrec.report.build import ReportData

_CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: #1d2430; margin: 0 auto; max-width: 1100px; padding: 24px; }
h1 { font-size: 26px; margin-bottom: 4px; }
h2 { font-size: 20px; border-bottom: 2px solid #d9dee7; padding-bottom: 4px; margin-top: 36px; }
h3 { font-size: 16px; margin-top: 20px; }
.meta { color: #5b6575; margin-top: 0; }
table { border-collapse: collapse; margin: 10px 0 16px; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #d9dee7; padding: 4px 10px; text-align: right; }
th { background: #f2f4f8; }
td:first-child, th:first-child { text-align: left; }
tr.main td { font-weight: 600; }
.figures { display: flex; flex-wrap: wrap; gap: 12px; }
.figures img { max-width: 100%; border: 1px solid #e6e9ef; }
.note { background: #fff7e0; border-left: 4px solid #f0b400; padding: 8px 12px; }
details { margin: 8px 0; }
code { background: #f2f4f8; padding: 1px 4px; border-radius: 3px; }
"""


def render(data: ReportData) -> str:
    """The whole page for ``data``."""
    sections = []
    for section, title, command in _SECTIONS:
        try:
            sections.append(section(data))
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            # one unreadable input must not cost the whole report
            sections.append(
                f"<h2>{escape(title)}</h2><p class='note'>This section cannot be drawn from "
                f"its data ({escape(type(exc).__name__)}: {escape(str(exc))}); run "
                f"<code>{escape(command)}</code> again to rewrite it.</p>"
            )
    return (
        "<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>\n"
        f"<title>crossrec report — {escape(_time(data.generated_at))}</title>\n"
        f"<style>{_CSS}</style>\n</head>\n<body>\n"
        "<h1>crossrec report</h1>\n"
        f"<p class='meta'>Workspace <code>{escape(data.workspace)}</code> · generated "
        f"{escape(_time(data.generated_at))}</p>\n" + "\n".join(sections) + "\n</body>\n</html>\n"
    )


# -- sections -----------------------------------------------------------------------------------
def _overview(data: ReportData) -> str:
    parts = ["<h2>1. Data overview</h2>", _notes(data, "overview")]
    ov = data.overview
    if ov is None:
        return "\n".join(parts)
    rows = []
    for p in ov.platforms:
        c = p.events_per_account
        rows.append(
            [
                p.name,
                p.accounts,
                p.items,
                p.events,
                float(c.mean()) if c.size else None,
                float(np.median(c)) if c.size else None,
                int(c.max()) if c.size else None,
                _time(p.first_ts),
                _time(p.last_ts),
                p.quarantined,
            ]
        )
    parts.append(
        _table(
            [
                "platform",
                "accounts",
                "items",
                "events",
                "events/account (mean)",
                "median",
                "max",
                "first event",
                "last event",
                "quarantined rows",
            ],
            rows,
        )
    )
    link_rows: list[list[Any]] = [[f"{a} ↔ {b}", n] for (a, b), n in ov.known_links.items()]
    link_rows.append(["asserted links (crossrec link)", ov.asserted_links])
    parts.append(_table(["links", "count"], link_rows))
    other = {k: n for k, n in ov.quarantined.items() if not k[1]}
    facts = [f"{ov.duplicates:,} duplicate input rows were skipped"]
    if other:
        facts.append(
            ", ".join(f"{n:,} quarantined {kind} rows" for (kind, _), n in other.items())
            + " belong to no platform"
        )
    parts.append(f"<p>{escape('; '.join(facts))}.</p>")
    counts = {p.name: p.events_per_account for p in ov.platforms if p.events_per_account.size}
    if counts:
        parts.append(_figures([(plots.events_per_account(counts), "events per account")]))
    return "\n".join(parts)


def _link(data: ReportData) -> str:
    from crossrec.evaluate.link_eval import FALSE_SAMPLE, KEYS

    parts = ["<h2>2. Linkage evaluation</h2>", _notes(data, "link")]
    doc = data.link_eval
    if doc is None:
        return "\n".join(parts)
    details: dict[str, Any] = doc.get("details") or {}
    if details:
        parts.append(
            "<p class='meta'>"
            + escape(
                f"Model {details.get('model_version', '?')}, truth "
                f"{details.get('truth_file', '?')}, evaluated {details.get('evaluated_at', '?')}."
            )
            + "</p>"
        )
    rows: list[list[Any]] = [["crossrec", *[doc.get(k) for k in KEYS]]]
    baselines: dict[str, Any] = doc.get("baselines") or {}
    rows += [[name, *[(b or {}).get(k) for k in KEYS]] for name, b in baselines.items()]
    parts.append(_table(["method", *KEYS], rows, main_rows=1))
    if not details:
        return "\n".join(parts)
    parts.append(
        "<p>"
        + escape(
            f"{details.get('n_true_candidates', 0):,} of {details.get('n_truth', 0):,} true pairs "
            f"are among the linker's candidates; {details.get('n_false_candidates', 0):,} "
            "candidate pairs are not true pairs (the plot shows at most "
            f"{FALSE_SAMPLE:,} of them, a seeded sample). Pairs involving known-linked "
            "accounts are left out, as in the metrics."
        )
        + "</p>"
    )
    threshold = details.get("threshold")
    operating = _point(doc)
    points = {name: p for name, b in baselines.items() if (p := _point(b or {})) is not None}
    parts.append(
        _figures(
            [
                (
                    plots.score_histogram(
                        details.get("true_scores", []), details.get("false_scores", []), threshold
                    ),
                    "score distributions",
                ),
                (plots.pr_curve(details.get("pr_curve", {}), operating, points), "PR curve"),
                (plots.calibration(details.get("calibration", {})), "calibration"),
            ]
        )
    )
    return "\n".join(parts)


def _recommend(data: ReportData) -> str:
    parts = ["<h2>3. Recommendation evaluation</h2>", _notes(data, "recommend")]
    for ev in data.recommend:
        title = f"{ev.platform}" + (f" — {ev.label}" if ev.label else "")
        facts = [f"file {ev.file}"]
        if ev.model_version:
            facts.append(f"model {ev.model_version}")
        if ev.n_accounts is not None:
            facts.append(f"{ev.n_accounts:,} accounts evaluated")
        parts.append(f"<h3>{escape(title)}</h3><p class='meta'>{escape('; '.join(facts))}</p>")
        rows = [[name, *[v.get(m) for m in ev.metrics]] for name, v in ev.methods.items()]
        parts.append(_table(["method", *ev.metrics], rows, main_rows=1))
        parts.append(
            _figures([(plots.metric_bars(title, ev.methods, ev.metrics), f"{title} metrics")])
        )
    return "\n".join(parts)


def _account_map(data: ReportData) -> str:
    parts = ["<h2>4. Account map</h2>", _notes(data, "map")]
    m = data.account_map
    if m is None:
        return "\n".join(parts)
    shown = len(m.xy)
    parts.append(
        "<p>"
        + escape(
            f"Sequence vectors of model {m.model_version} (one space for every platform), "
            f"projected on their first two principal components: {shown:,} of "
            f"{m.n_accounts:,} accounts"
            + (" (a seeded sample)." if shown < m.n_accounts else ".")
            + " Accounts of one person on different platforms should lie close together."
        )
        + "</p>"
    )
    parts.append(_figures([(plots.account_map(m.xy, m.platform, m.explained), "account map")]))
    return "\n".join(parts)


def _model(data: ReportData) -> str:
    parts = ["<h2>5. Model</h2>", _notes(data, "model")]
    meta = data.model
    if meta is None:
        return "\n".join(parts)
    cfg = meta.get("config") or {}
    facts: list[list[Any]] = [
        ["version", meta.get("version")],
        ["created", meta.get("created_at")],
        ["training seconds", meta.get("seconds")],
        ["seed", meta.get("seed")],
        ["text encoder", cfg.get("encoder")],
        ["CF model", cfg.get("cf_model")],
    ]
    data_facts = meta.get("data") or {}
    for key, value in data_facts.items():
        if isinstance(value, dict):
            facts += [[f"{key}: {k}", v] for k, v in value.items()]
        else:
            facts.append([key, value])
    parts.append(_table(["", "value"], facts))
    if data.link_summary:
        s = data.link_summary
        matcher = s.get("matcher") or {}
        rows: list[list[Any]] = [
            [k, s.get(k)]
            for k in (
                "candidate_pairs",
                "known_links",
                "asserted_links",
                "persons",
                "threshold",
                "target_precision",
                "heldout_precision",
                "heldout_recall",
                "reason",
                "seconds",
            )
            if k in s
        ]
        rows += [[f"matcher {k}", v] for k, v in matcher.items() if not isinstance(v, dict | list)]
        parts.append("<h3>Linking</h3>" + _table(["", "value"], rows))
        parts.append(_operating_point(s))
    metrics = meta.get("metrics") or {}
    figures = []
    seconds = metrics.get("seconds")
    if isinstance(seconds, dict) and seconds:
        figures.append((plots.stage_seconds(seconds), "training time per stage"))
    epochs = (metrics.get("sequence") or {}).get("epochs")
    if isinstance(epochs, list) and epochs and isinstance(epochs[0], dict):
        figures.append((plots.loss_curves(epochs), "sequence encoder losses"))
    if figures:
        parts.append(_figures(figures))
    flat = list(_flatten(metrics))
    if flat:
        parts.append(
            "<details><summary>All training metrics</summary>"
            + _table(["metric", "value"], [[k, v] for k, v in flat])
            + "</details>"
        )
    return "\n".join(parts)


#: Per section: its heading and the command that rewrites its data, for when a file holds
#: something the section cannot draw (hand-edited, or written by another crossrec release).
_SECTIONS: tuple[tuple[Callable[[ReportData], str], str, str], ...] = (
    (_overview, "1. Data overview", "crossrec ingest"),
    (_link, "2. Linkage evaluation", "crossrec evaluate link"),
    (_recommend, "3. Recommendation evaluation", "crossrec evaluate recommend"),
    (_account_map, "4. Account map", "crossrec train"),
    (_model, "5. Model", "crossrec train"),
)


# -- pieces ---------------------------------------------------------------------------------------
def _notes(data: ReportData, key: str) -> str:
    return "\n".join(f"<p class='note'>{_code(escape(n))}</p>" for n in data.notes.get(key, []))


def _code(text: str) -> str:
    """Backquoted commands in a note become ``<code>`` (the text is already escaped)."""
    pieces = text.split("`")
    return "".join(p if i % 2 == 0 else f"<code>{p}</code>" for i, p in enumerate(pieces))


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, main_rows: int = 0) -> str:
    head = "".join(f"<th>{escape(str(h))}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        cls = " class='main'" if i < main_rows else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{escape(_fmt(v))}</td>" for v in row) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _figures(figs: Sequence[tuple[str, str]]) -> str:
    imgs = "".join(f"<img src='{uri}' alt='{escape(alt)}'>" for uri, alt in figs)
    return f"<div class='figures'>{imgs}</div>"


def _point(doc: dict[str, Any]) -> tuple[float, float] | None:
    """(recall, precision) when both exist."""
    r, p = doc.get("recall"), doc.get("precision")
    return (float(r), float(p)) if r is not None and p is not None else None


def _flatten(doc: dict[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for key, value in doc.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _flatten(value, f"{name}.")
        elif isinstance(value, list):
            yield name, f"{len(value)} entries"
        else:
            yield name, value


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.3f}" if abs(v) < 1e6 else f"{v:,.0f}"
    return str(v)


def _time(t: datetime | None) -> str:
    return "—" if t is None else t.strftime("%Y-%m-%d %H:%M UTC")


def _operating_point(s: dict[str, Any]) -> str:
    """How the threshold was chosen, from every known link out of fold: the estimated share
    of accounts with a partner, the calibration of link probabilities, the scorer selection
    and the candidate recall of partners still to be found."""
    op = s.get("operating_point") or {}
    selection = s.get("selection") or {}
    recall = s.get("candidate_recall") or {}
    rows: list[list[Any]] = [
        ["probable links (mutual best, below the threshold)", s.get("probable_links")],
        ["accounts with a partner (mixture estimate)", op.get("partner_share")],
        ["known links seen from both ends (units)", op.get("units")],
        ["simulated links the threshold rests on", op.get("certified_on_links")],
        ["known links needed to certify the target", op.get("known_links_needed")],
        ["Brier score of link probabilities (out of fold)", op.get("brier")],
        ["calibration error (out of fold)", op.get("calibration_error")],
        ["scorer chosen", selection.get("chosen")],
        ["cf_mapping MRR on the known links", selection.get("cf_mapping_mrr")],
    ]
    for part in ("unseen", "seen"):
        r = recall.get(part) or {}
        rows.append(
            [
                f"candidate recall of {part} known links (as generated / cross-fitted CF maps)",
                f"{r.get('as_generated')} / {r.get('cross_fitted')} ({r.get('links')} links)",
            ]
        )
    mrr = selection.get("mrr") or {}
    top = sorted(mrr.items(), key=lambda kv: -kv[1])[:8]
    html = "<h3>Operating point</h3>" + _table(["", "value"], rows)
    if top:
        html += "<p>Out-of-fold MRR of the known partners by scorer (best 8):</p>"
        html += _table(["scorer", "MRR"], [[k, v] for k, v in top])
    reliability = op.get("reliability")
    if reliability:
        bins = dict(reliability, count=reliability.get("weight", []))
        html += _figures([(plots.calibration(bins), "link probabilities, out of fold")])
    return html
