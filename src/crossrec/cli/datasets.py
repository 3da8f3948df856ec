"""``crossrec datasets ...`` commands: build benchmark datasets with known ground truth.

Each command writes canonical files that ``crossrec ingest`` reads, lists what it wrote on
stderr and, with ``--json``, prints its summary (and nothing else) on stdout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from crossrec.cli.common import JsonOpt, err, new_app, print_json
from crossrec.errors import InputError

OutOpt = Annotated[
    Path, typer.Option("--out", help="Output folder (created; must be empty unless --force).")
]
ForceOpt = Annotated[bool, typer.Option("--force", help="Write into a non-empty output folder.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed: same seed, same bytes.")]
SourceOpt = Annotated[
    Path | None,
    typer.Option(
        "--source", help="Dataset folder (default: $CROSSREC_DATA/<name> or ../shared/data/<name>)."
    ),
]
AnchorOpt = Annotated[
    float,
    typer.Option(
        "--anchor-fraction",
        help="Fraction of multi-platform persons whose links go to known_links.csv.",
    ),
]


def _prepare_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file", hint="name a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise InputError(
            f"--out {out} is not empty",
            hint="choose a new folder or pass --force to write into it",
        )


def _report(out: Path, summary: dict[str, Any], json_out: bool) -> None:
    for p in summary.get("platforms", []):
        err.print(
            f"{out / p['name']}: {p['accounts']:,} accounts, {p['items']:,} items, "
            f"{p['events']:,} events",
            highlight=False,
        )
    err.print(
        f"{out}: {summary['known_links']:,} known links, {summary['truth_links']:,} truth links, "
        f"{summary['persons']:,} persons ({summary['single_platform_persons']:,} on one platform)",
        highlight=False,
    )
    if "events_per_second" in summary:
        err.print(
            f"{summary['seconds']:.1f} s, {summary['events_per_second']:,} events/s",
            highlight=False,
        )
    err.print(f"files: {', '.join(summary['files'])}", highlight=False)
    if json_out:
        print_json({"out": str(out), **summary})


def _split_list(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    return tuple(part.strip() for part in text.split(",") if part.strip())


def register(app: typer.Typer) -> None:
    """Register the datasets command group on ``app``."""
    group = new_app("Build benchmark datasets: real data split into platforms, or synthetic.")
    app.add_typer(group, name="datasets")

    @group.command("movielens")
    def movielens(
        out: OutOpt,
        source: SourceOpt = None,
        platforms: Annotated[int, typer.Option("--platforms", help="Number of platforms.")] = 2,
        mode: Annotated[
            str,
            typer.Option(
                "--mode", help="random (per event), temporal (per person, in time order), category."
            ),
        ] = "random",
        single_fraction: Annotated[
            float,
            typer.Option("--single-fraction", help="Fraction of persons on one platform only."),
        ] = 0.4,
        anchor_fraction: AnchorOpt = 0.3,
        perturb_titles: Annotated[
            bool,
            typer.Option(
                "--perturb-titles/--no-perturb-titles",
                help="Rewrite titles on platforms 2..k (case, article order, year format).",
            ),
        ] = True,
        rescale_values: Annotated[
            bool,
            typer.Option(
                "--rescale-values/--no-rescale-values",
                help="Ratings on platforms 2..k on other scales (1-10, 0-100, 1-5).",
            ),
        ] = True,
        clock: Annotated[
            str,
            typer.Option(
                "--clock",
                help="keep, shift (whole weeks), shift_days or drop: one for all or one per "
                "platform (keep,drop).",
            ),
        ] = "keep",
        shift_weeks: Annotated[
            int, typer.Option("--shift-weeks", help="shift: up to this many whole weeks.")
        ] = 52,
        jitter_hours: Annotated[
            float, typer.Option("--jitter-hours", help="shift: up to this many hours per event.")
        ] = 3.0,
        shift_days: Annotated[
            int, typer.Option("--shift-days", help="shift_days: up to this many whole days.")
        ] = 365,
        titles: Annotated[
            str | None,
            typer.Option(
                "--titles",
                help="source, perturbed or no_year: one for all or one per platform "
                "(overrides --perturb-titles).",
            ),
        ] = None,
        implicit: Annotated[
            str | None,
            typer.Option(
                "--implicit", help="Platforms whose events become 'watch' without a value."
            ),
        ] = None,
        max_events: Annotated[
            int | None,
            typer.Option(
                "--max-events-per-account",
                help="Cut every account to at most this many events (chosen at random).",
            ),
        ] = None,
        names: Annotated[
            str | None, typer.Option("--names", help="Platform names, e.g. video,stream.")
        ] = None,
        seed: SeedOpt = 42,
        force: ForceOpt = False,
        json_out: JsonOpt = False,
    ) -> None:
        """Split MovieLens (ml-latest-small) into platforms with known links between accounts."""
        from crossrec.cli.progress import rich_progress
        from crossrec.datasets import movielens as ml
        from crossrec.datasets.split import SplitConfig, build_split

        config = SplitConfig(
            platforms=platforms,
            names=_split_list(names),
            mode=mode,  # type: ignore[arg-type]  # validated by SplitConfig
            single_fraction=single_fraction,
            anchor_fraction=anchor_fraction,
            perturb_titles=perturb_titles,
            rescale_values=rescale_values,
            clock=_split_list(clock) or ("keep",),  # type: ignore[arg-type]
            shift_weeks=shift_weeks,
            jitter_hours=jitter_hours,
            shift_days=shift_days,
            titles=_split_list(titles),  # type: ignore[arg-type]  # validated by SplitConfig
            implicit=_split_list(implicit) or (),
            max_events_per_account=max_events,
            seed=seed,
        )
        _prepare_out(out, force)
        dataset = ml.load_movielens(source)
        with rich_progress() as progress:
            summary = build_split(dataset, out, config, source_scale=ml.SCALE, progress=progress)
        _report(out, summary, json_out)

    @group.command("douban")
    def douban(
        out: OutOpt,
        source: SourceOpt = None,
        anchor_fraction: AnchorOpt = 0.5,
        seed: SeedOpt = 42,
        force: ForceOpt = False,
        json_out: JsonOpt = False,
    ) -> None:
        """Douban Book and Music as two platforms; shared users are the known and truth links."""
        from crossrec.cli.progress import rich_progress
        from crossrec.datasets.douban import build_douban

        _prepare_out(out, force)
        with rich_progress() as progress:
            summary = build_douban(
                out, source=source, anchor_fraction=anchor_fraction, seed=seed, progress=progress
            )
        _report(out, summary, json_out)

    @group.command("synthetic")
    def synthetic(
        out: OutOpt,
        accounts: Annotated[int, typer.Option("--accounts", help="Accounts over all platforms.")],
        events: Annotated[int, typer.Option("--events", help="Events over all platforms.")],
        platforms: Annotated[
            int, typer.Option("--platforms", help="Platforms: video, music, books, shop, ...")
        ] = 2,
        fmt: Annotated[str, typer.Option("--format", help="parquet or csv.")] = "parquet",
        items: Annotated[
            int | None,
            typer.Option("--items", help="Items per platform (default 5 * sqrt(events))."),
        ] = None,
        single_fraction: Annotated[
            float,
            typer.Option("--single-fraction", help="Chance a person is on one platform only."),
        ] = 0.4,
        anchor_fraction: AnchorOpt = 0.3,
        chunk_events: Annotated[
            int, typer.Option("--chunk-events", help="Events per chunk (bounds memory).")
        ] = 500_000,
        seed: SeedOpt = 42,
        force: ForceOpt = False,
        json_out: JsonOpt = False,
    ) -> None:
        """Generate a synthetic multi-platform world with ground truth, streamed to disk."""
        from crossrec.cli.progress import rich_progress
        from crossrec.datasets.synthetic import SyntheticConfig, generate_synthetic

        config = SyntheticConfig(
            accounts=accounts,
            events=events,
            platforms=platforms,
            items_per_platform=items,
            single_fraction=single_fraction,
            anchor_fraction=anchor_fraction,
            chunk_events=chunk_events,
            format=fmt,  # type: ignore[arg-type]  # validated by SyntheticConfig
            seed=seed,
        )
        _prepare_out(out, force)
        with rich_progress() as progress:
            summary = generate_synthetic(out, config, progress=progress)
        _report(out, summary, json_out)

    @group.command("holdout")
    def holdout(
        source: Annotated[
            Path, typer.Option("--from", help="A folder made by `datasets movielens|douban`.")
        ],
        out: OutOpt,
        platform: Annotated[
            str, typer.Option("--platform", help="The platform whose interactions are split.")
        ],
        cold_fraction: Annotated[
            float,
            typer.Option(
                "--cold-fraction",
                help="Fraction of known-linked accounts whose whole history is the cold test.",
            ),
        ] = 0.5,
        warm_fraction: Annotated[
            float,
            typer.Option(
                "--warm-fraction", help="Per other account, the fraction of interactions held out."
            ),
        ] = 0.2,
        min_warm: Annotated[
            int, typer.Option("--min-warm", help="Only accounts with this many interactions.")
        ] = 5,
        seed: SeedOpt = 42,
        force: ForceOpt = False,
        json_out: JsonOpt = False,
    ) -> None:
        """Hold a platform's interactions out as recommendation tests (test_cold.csv for
        accounts new to it, test_warm.csv for a per-account split)."""
        from crossrec.datasets.holdout import build_holdout

        _prepare_out(out, force)
        summary = build_holdout(
            source,
            out,
            platform,
            cold_fraction=cold_fraction,
            warm_fraction=warm_fraction,
            min_warm=min_warm,
            seed=seed,
        )
        err.print(
            f"{out / platform}: ingest events.csv ({summary['ingested_interactions']:,}); "
            f"test_cold.csv: {summary['cold_accounts']:,} accounts, "
            f"{summary['cold_interactions']:,} interactions; test_warm.csv: "
            f"{summary['warm_accounts']:,} accounts, {summary['warm_interactions']:,} interactions",
            highlight=False,
        )
        if json_out:
            print_json({"out": str(out), **summary})
