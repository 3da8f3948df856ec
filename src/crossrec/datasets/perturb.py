"""How one platform's export differs from another's: titles, rating scales and clocks.

A person's behaviour is the same on every platform, but each platform writes it down its own
way. These functions apply such differences to a split dataset so that a linker cannot match
accounts or items by exact strings, values or timestamps.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Literal

import numpy as np

CaseStyle = Literal["keep", "lower", "upper", "title"]
YearStyle = Literal["keep", "brackets", "dash", "drop"]
ClockPolicy = Literal["keep", "shift", "shift_days", "drop"]
CLOCK_POLICIES: tuple[str, ...] = ("keep", "shift", "shift_days", "drop")
#: How a platform writes titles: the source's, a random house style per title, or a random
#: house style that never keeps the year.
TitleStyle = Literal["source", "perturbed", "no_year"]
TITLE_STYLES: tuple[str, ...] = ("source", "perturbed", "no_year")

#: Leading articles that catalogues move behind the title ("Matrix, The"). Titles are matched
#: case-sensitively because catalogues capitalise the article.
ARTICLES: tuple[str, ...] = (
    "The", "A", "An", "Les", "La", "Le", "L'", "Il", "El", "Los", "Las", "Das", "Der", "Die",
)  # fmt: skip
_YEAR = re.compile(r"\s*\((\d{4}(?:\s*[-–]\s*\d{4})?)\)\s*$")
_ART = "(?P<art>" + "|".join(ARTICLES) + ")"
_TRAILING_ARTICLE = re.compile(r"^(?P<body>.+), " + _ART + "$")
# "L'Homme" has no space after the article; the others need one.
_LEADING_ARTICLE = re.compile("^" + _ART + r"(?: |(?<=')(?=\w))(?P<body>.+)$")
_WORD = re.compile(r"\w+")


def _split_title(title: str) -> tuple[str, str, str | None]:
    """Split ``"Main (Alternate) (1999)"`` into main part, alternate part and year."""
    year: str | None = None
    m = _YEAR.search(title)
    if m is not None and m.start() > 0:
        year = m.group(1)
        title = title[: m.start()]
    main, sep, alt = title.partition(" (")
    return main, (sep + alt if sep else ""), year


def _move_article(main: str) -> str:
    m = _TRAILING_ARTICLE.match(main)
    if m is not None:
        art = m.group("art")
        return f"{art}{'' if art.endswith(chr(39)) else ' '}{m.group('body')}"
    m = _LEADING_ARTICLE.match(main)
    if m is not None:
        return f"{m.group('body')}, {m.group('art')}"
    return main


def _title_case(text: str) -> str:
    return _WORD.sub(lambda w: w[0][:1].upper() + w[0][1:].lower(), text)


def rewrite_title(
    title: str,
    *,
    case: CaseStyle = "keep",
    move_article: bool = False,
    year: YearStyle = "keep",
) -> str:
    """Rewrite a catalogue title in one platform's house style.

    Parameters
    ----------
    title
        A title such as ``"Matrix, The (1999)"``; a trailing ``(YYYY)`` is the year.
    case
        ``lower``, ``upper``, ``title`` (each word capitalised) or ``keep``.
    move_article
        Move a leading article behind the main title or a trailing one in front
        (``"Matrix, The"`` <-> ``"The Matrix"``).
    year
        ``keep`` ``(1999)``, ``brackets`` ``[1999]``, ``dash`` ``- 1999`` or ``drop``.

    Returns
    -------
    str
        The rewritten title; its words are those of ``title`` (ignoring case), less the year
        when ``year="drop"``.

    Examples
    --------
    >>> rewrite_title("Matrix, The (1999)", move_article=True, year="brackets")
    'The Matrix [1999]'
    """
    main, alt, yr = _split_title(title)
    if move_article:
        main = _move_article(main)
    text = main + alt
    if yr is not None:
        if year == "keep":
            text = f"{text} ({yr})"
        elif year == "brackets":
            text = f"{text} [{yr}]"
        elif year == "dash":
            text = f"{text} - {yr}"
    if case == "lower":
        text = text.lower()
    elif case == "upper":
        text = text.upper()
    elif case == "title":
        text = _title_case(text)
    return text


def perturb_title(title: str, rng: random.Random, *, drop_year: bool = False) -> str:
    """Rewrite ``title`` in a randomly chosen house style (case, article order, year format).

    Every call draws the same number of values from ``rng``, so the titles that follow get the
    same draws whatever this title looks like.

    Parameters
    ----------
    title
        A catalogue title, e.g. ``"Matrix, The (1999)"``.
    rng
        The source of randomness; seed it for reproducible output.
    drop_year
        Never keep the year (a catalogue that does not print it); case and article order are
        drawn as usual.

    Returns
    -------
    str
        The title with the same words (ignoring case), except that the year may be dropped.

    Examples
    --------
    >>> perturb_title("Matrix, The (1999)", random.Random(3))  # doctest: +SKIP
    'the matrix - 1999'
    """
    u_case, u_article, u_year = rng.random(), rng.random(), rng.random()
    case: CaseStyle = "keep"
    if u_case < 0.5:
        case = ("lower", "upper", "title")[int(u_case * 6) % 3]
    year: YearStyle = ("keep", "brackets", "dash", "drop")[min(int(u_year * 4), 3)]
    if drop_year:
        year = "drop"
    return rewrite_title(title, case=case, move_article=u_article < 0.5, year=year)


def title_words(title: str) -> list[str]:
    """The case-folded words of a title, in order (what perturbation keeps)."""
    return _WORD.findall(title.casefold())


@dataclass(frozen=True)
class ValueScale:
    """A rating scale: values from ``low`` to ``high`` in steps of ``step``."""

    low: float
    high: float
    step: float

    @property
    def label(self) -> str:
        def fmt(x: float) -> str:
            return f"{x:g}"

        return f"{fmt(self.low)}-{fmt(self.high)}/{fmt(self.step)}"


#: MovieLens stars, and the scales other platforms use for the same opinion.
STARS_HALF = ValueScale(0.5, 5.0, 0.5)
STARS = ValueScale(1.0, 5.0, 1.0)
TEN_POINT = ValueScale(1.0, 10.0, 1.0)
PERCENT = ValueScale(0.0, 100.0, 1.0)
#: Target scales dealt to platforms 2, 3, ... when values are rescaled (platform 1 keeps its own).
RESCALE_CYCLE: tuple[ValueScale, ...] = (TEN_POINT, PERCENT, STARS)


def rescale(values: np.ndarray, source: ValueScale, target: ValueScale) -> np.ndarray:
    """Map values linearly from one rating scale onto another and round to its steps.

    Parameters
    ----------
    values
        ``(n,)`` float values on ``source``; NaN stays NaN.
    source, target
        The scales.

    Returns
    -------
    numpy.ndarray
        ``(n,)`` float values on ``target``, e.g. 0.5-5 stars -> 1-10: ``v * 2``.
    """
    v = np.asarray(values, dtype=np.float64)
    frac = (v - source.low) / (source.high - source.low)
    out = target.low + frac * (target.high - target.low)
    steps = np.floor((out - target.low) / target.step + 0.5)  # round half up, not to even
    return np.clip(target.low + steps * target.step, target.low, target.high)


DAY_SECONDS = 24 * 3600
WEEK_SECONDS = 7 * DAY_SECONDS


def shift_clock(
    timestamps: np.ndarray,
    account_codes: np.ndarray,
    n_accounts: int,
    rng: np.random.Generator,
    *,
    max_weeks: int,
    jitter_hours: float,
    unit_seconds: int = WEEK_SECONDS,
) -> tuple[np.ndarray, np.ndarray]:
    """Shift each account's clock by whole weeks, plus a little jitter per event.

    A whole number of weeks keeps the weekday and hour of each event, so a person's activity
    rhythm survives while absolute times no longer match across platforms. With
    ``unit_seconds=DAY_SECONDS`` the shift is in whole days: the hour survives, the weekday
    does not.

    Parameters
    ----------
    timestamps
        ``(n,)`` int64 epoch seconds.
    account_codes
        ``(n,)`` int account index of each event, ``0 <= code < n_accounts``.
    n_accounts
        Number of accounts.
    rng
        Seeded generator.
    max_weeks
        Each account moves by a whole number of units (weeks by default) drawn from
        ``[-max_weeks, max_weeks]``.
    jitter_hours
        Each event moves by up to this many hours either way (whole seconds).
    unit_seconds
        The length of one unit of shift: :data:`WEEK_SECONDS` or :data:`DAY_SECONDS`.

    Returns
    -------
    tuple of numpy.ndarray
        ``(n,)`` shifted int64 timestamps and ``(n_accounts,)`` int64 offsets in units.
    """
    weeks = rng.integers(-max_weeks, max_weeks + 1, size=n_accounts, dtype=np.int64)
    jitter_s = round(jitter_hours * 3600)
    jitter = rng.integers(-jitter_s, jitter_s + 1, size=len(timestamps), dtype=np.int64)
    shifted = np.asarray(timestamps, dtype=np.int64) + weeks[account_codes] * unit_seconds + jitter
    return shifted, weeks
