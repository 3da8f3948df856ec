"""Freshness in-process: one event through the server's own write path until the list changes.

Opens a workspace built by ``bench/serve.py`` (``--dir D``, ideally after ``crossrec link``
so that every event also re-scores the account's links), starts the service state without
HTTP and without lists computed ahead, and for ``--trials`` accounts: ``ServeState.ingest``
of one event for the account's top item (stored, CF and sequence vectors refreshed, links
queued for re-scoring with the served matcher), then recommendations until the list changes.
Prints the milliseconds from the ingest call to the changed list, on a linked build also to
the end of the background re-scoring of the account's links, and how many were re-scored.

    .venv/bin/python bench/freshness.py --dir /tmp/bs100k --trials 100
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serve import raw_accounts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, required=True, help="a bench/serve.py build")
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)

    from crossrec.serve.state import ServeState
    from crossrec.workspace import Workspace

    ws = Workspace(args.dir / "ws")
    started = time.perf_counter()
    state = ServeState(ws, poll_seconds=3600)
    state.start(poll=False)
    state.warmer.stop(wait=60)  # every list is computed on request here
    figures: dict[str, object] = {"start_s": round(time.perf_counter() - started, 1)}
    model = state.require_model()
    rec = model.recommender
    accounts = raw_accounts(args.dir, 3 * args.trials, args.seed)[-args.trials :]
    times: list[float] = []
    links_times: list[float] = []
    relinked = 0
    try:
        for n, raw in enumerate(accounts):
            account = state.account_id("video", raw)
            before = [r.item for r in rec.recommend("video", account, 10)]
            event = {
                "account": raw,
                "item": before[0],
                "event": "watch",
                "timestamp": time.time(),
                "event_id": f"bench-fresh-inproc-{n}-{time.time_ns()}",
            }
            rescored = model.linker.rescored if model.linker is not None else 0
            t = time.perf_counter()
            state.ingest("video", [event], source="bench")
            while time.perf_counter() - t < 30:
                if [r.item for r in rec.recommend("video", account, 10)] != before:
                    break
            times.append(time.perf_counter() - t)
            if model.linker is not None:  # links are re-scored in the background
                state.relinks.wait(timeout=60)
                links_times.append(time.perf_counter() - t)
                relinked += model.linker.rescored - rescored
    finally:
        state.close()
        ws.close()
    ms = np.array(times) * 1000
    figures.update(
        trials=len(times),
        relinked=relinked,
        p50_ms=round(float(np.percentile(ms, 50)), 1),
        p99_ms=round(float(np.percentile(ms, 99)), 1),
        max_ms=round(float(ms.max()), 1),
    )
    if links_times:  # from the ingest call until the account's links were re-scored
        lms = np.array(links_times) * 1000
        figures.update(
            links_p50_ms=round(float(np.percentile(lms, 50)), 1),
            links_p99_ms=round(float(np.percentile(lms, 99)), 1),
        )
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
