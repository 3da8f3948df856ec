"""The HTTP service under load: recommendation latency, throughput, and freshness.

Builds (or reuses, with ``--dir``) a workspace of synthetic accounts on two platforms, trained
with a fast configuration, then starts ``crossrec serve`` and, beside it, a bare FastAPI
endpoint in its own uvicorn process, and measures:

* latency of ``GET .../recommendations?k=10`` at a fixed offered rate (default 500 req/s for
  60 s) with an open-loop generator: requests are sent on schedule whatever the answers do,
  and latency counts from the scheduled time (queueing included) as well as from the send;
* throughput of the recommendations route and of the bare endpoint, closed loop (``wrk`` when
  installed, else the Python client with as many connections), and their ratio;
* freshness: POST one event for an account's top recommended item, then poll its
  recommendations until the list changes (the item is now seen); time from the POST.

The load generator is this script's own asyncio HTTP/1.1 client on keep-alive connections
(an open-loop Python generator; ``wrk`` cannot hold a fixed rate).

    .venv/bin/python bench/serve.py --accounts 100000 --json    # per platform (target scale)
    .venv/bin/python bench/serve.py --accounts 2000 --seconds 10 # quick check
    .venv/bin/python bench/serve.py --accounts 100000 --dir D --routes-only  # route medians
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path

import numpy as np

BARE_APP = """
from fastapi import FastAPI
app = FastAPI()
@app.get("/v1/platforms/{platform}/accounts/{account}/recommendations")
async def bare(platform: str, account: str, k: int = 10):
    return {"items": [], "model_version": "bare"}
"""


# -- a small HTTP/1.1 client -----------------------------------------------------------------------
class Conn:
    """One keep-alive connection; requests on it go one at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Conn:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def request(
        self, method: str, path: str, headers: dict[str, str], body: bytes = b""
    ) -> tuple[int, bytes]:
        head = f"{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Length: {len(body)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.writer.write(head.encode() + b"\r\n" + body)
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


async def _pool(port: int, n: int) -> asyncio.Queue[Conn]:
    pool: asyncio.Queue[Conn] = asyncio.Queue()
    for _ in range(n):
        pool.put_nowait(await Conn.open(port))
    return pool


async def open_loop(
    port: int, paths: list[str], headers: dict[str, str], rate: float, seconds: float, conns: int
) -> dict[str, float]:
    """Send ``rate`` requests per second on schedule for ``seconds``; latency percentiles."""
    loop = asyncio.get_running_loop()
    pool = await _pool(port, conns)
    scheduled: list[float] = []
    served: list[float] = []
    errors = 0

    async def one(path: str, due: float) -> None:
        nonlocal errors
        conn = await pool.get()
        sent = loop.time()
        try:
            status, _ = await conn.request("GET", path, headers)
        finally:
            pool.put_nowait(conn)
        done = loop.time()
        scheduled.append(done - due)
        served.append(done - sent)
        errors += status != 200

    n = int(rate * seconds)
    start = loop.time() + 0.2
    tasks = []
    for i in range(n):
        due = start + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(paths[i % len(paths)], due)))
    await asyncio.gather(*tasks)
    elapsed = loop.time() - start
    while not pool.empty():
        pool.get_nowait().close()
    s, v = np.array(scheduled) * 1000, np.array(served) * 1000
    return {
        "offered_per_s": rate,
        "seconds": round(elapsed, 1),
        "requests": n,
        "achieved_per_s": round(n / elapsed, 1),
        "errors": errors,
        "p50_ms": round(float(np.percentile(s, 50)), 2),
        "p90_ms": round(float(np.percentile(s, 90)), 2),
        "p99_ms": round(float(np.percentile(s, 99)), 2),
        "max_ms": round(float(s.max()), 2),
        "p50_ms_from_send": round(float(np.percentile(v, 50)), 2),
        "p99_ms_from_send": round(float(np.percentile(v, 99)), 2),
    }


async def closed_loop(
    port: int, paths: list[str], headers: dict[str, str], seconds: float, conns: int
) -> float:
    """Requests per second with ``conns`` connections each sending back to back."""
    loop = asyncio.get_running_loop()
    pool = [await Conn.open(port) for _ in range(conns)]
    stop = loop.time() + seconds
    count = 0

    async def worker(conn: Conn, offset: int) -> None:
        nonlocal count
        i = offset
        while loop.time() < stop:
            await conn.request("GET", paths[i % len(paths)], headers)
            count += 1
            i += conns

    started = loop.time()
    await asyncio.gather(*(worker(c, i) for i, c in enumerate(pool)))
    for c in pool:
        c.close()
    return count / (loop.time() - started)


def wrk_throughput(url: str, token: str, seconds: int, conns: int) -> float | None:
    if shutil.which("wrk") is None:
        return None
    out = subprocess.run(
        ["wrk", "-t2", f"-c{conns}", f"-d{seconds}s", "-H", f"Authorization: Bearer {token}", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return float(match.group(1)) if match else None


async def freshness(
    port: int, headers: dict[str, str], accounts: list[str], trials: int
) -> dict[str, float]:
    """Seconds from POSTing an event for an account's top item to a changed list."""
    conn = await Conn.open(port)
    times = []
    for n, account in enumerate(accounts[:trials]):
        path = f"/v1/platforms/video/accounts/{account}/recommendations?k=10"
        status, body = await conn.request("GET", path, headers)
        before = [i["item"] for i in json.loads(body)["items"]]
        event = {
            "account": account,
            "item": before[0],
            "event": "watch",
            "timestamp": time.time(),
            "event_id": f"bench-fresh-{n}-{time.time_ns()}",
        }
        started = time.perf_counter()
        status, _ = await conn.request(
            "POST",
            "/v1/platforms/video/events",
            {**headers, "Content-Type": "application/json"},
            json.dumps([event]).encode(),
        )
        assert status == 200, status
        while True:
            _, body = await conn.request("GET", path, headers)
            if [i["item"] for i in json.loads(body)["items"]] != before:
                break
            if time.perf_counter() - started > 30:
                break
        times.append(time.perf_counter() - started)
    conn.close()
    t = np.array(times) * 1000
    return {
        "trials": len(times),
        "p50_ms": round(float(np.percentile(t, 50)), 1),
        "p99_ms": round(float(np.percentile(t, 99)), 1),
        "max_ms": round(float(t.max()), 1),
    }


async def route_latency(
    port: int, headers: dict[str, str], accounts: list[str], n: int
) -> dict[str, float]:
    """Median milliseconds of the other account routes, one request at a time."""
    conn = await Conn.open(port)
    out: dict[str, float] = {}
    for route in ("profile", "links", "similar?on=music&k=10"):
        times = []
        for account in accounts[:n]:
            t = time.perf_counter()
            status, _ = await conn.request(
                "GET", f"/v1/platforms/video/accounts/{account}/{route}", headers
            )
            times.append(time.perf_counter() - t)
            assert status == 200, (route, status)
        out[route.split("?")[0] + "_p50_ms"] = round(float(np.median(times)) * 1000, 1)
    conn.close()
    return out


# -- set-up ----------------------------------------------------------------------------------------
def _free_port() -> int:
    with closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build(root: Path, accounts: int, events_per_account: int, seed: int) -> dict[str, float]:
    from crossrec.datasets.synthetic import SyntheticConfig, generate_synthetic
    from crossrec.train import train
    from crossrec.workspace import Workspace

    figures: dict[str, float] = {}
    t = time.perf_counter()
    total = 2 * accounts
    generate_synthetic(
        root / "world",
        SyntheticConfig(accounts=total, events=total * events_per_account, seed=seed),
    )
    figures["generate_s"] = round(time.perf_counter() - t, 1)
    wsdir = root / "ws"
    Workspace.init(wsdir).close()
    cfg = wsdir / "crossrec.toml"
    text = cfg.read_text().replace('encoder = "minilm"', 'encoder = "static"')
    text = text.replace("cf_iterations = 15", "cf_iterations = 5")
    # the sequence encoder: 240 optimiser steps, about 4 minutes here
    text = text.replace("epochs = 20", "epochs = 3").replace(
        "# max_steps = 20000", "max_steps = 240"
    )
    # one bench client: no rate limit in the way
    text = text.replace("rate_limit_per_second = 1000.0", "rate_limit_per_second = 1000000.0")
    text = text.replace("rate_limit_burst = 2000", "rate_limit_burst = 1000000")
    cfg.write_text(text)
    t = time.perf_counter()
    with Workspace(wsdir) as ws:
        for platform in ("video", "music"):
            folder = root / "world" / platform
            ws.ingest_events(
                platform, next(folder.glob("events.*")), items=next(folder.glob("items.*"))
            )
        ws.ingest_links(next((root / "world").glob("known_links.*")))
        figures["ingest_s"] = round(time.perf_counter() - t, 1)
        t = time.perf_counter()
        train(ws)
        figures["train_s"] = round(time.perf_counter() - t, 1)
    return figures


def raw_accounts(root: Path, n: int, seed: int, platform: str = "video") -> list[str]:
    import pyarrow.parquet as pq

    path = next((root / "world" / platform).glob("events.*"))
    if path.suffix == ".csv":
        import pyarrow.csv as pcsv

        column = pcsv.read_csv(path).column("account")
    else:
        column = pq.read_table(path, columns=["account"]).column("account")
    ids = sorted(set(column.to_pylist()))
    random.Random(seed).shuffle(ids)
    return [str(x) for x in ids[:n]]


def _wait_precomputed(port: int, headers: dict[str, str], timeout: float) -> int:
    """Wait until the server has computed its lists ahead; how many it holds."""
    import urllib.request

    deadline = time.monotonic() + timeout
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers=headers)
    while time.monotonic() < deadline:
        with urllib.request.urlopen(request, timeout=5) as r:
            text = r.read().decode()
        running = re.search(r"^crossrec_precompute_running ([\d.]+)", text, re.M)
        lists = re.findall(r"^crossrec_precomputed_lists\{[^}]*\} ([\d.e+]+)", text, re.M)
        if running and float(running.group(1)) == 0 and lists:
            return int(sum(float(x) for x in lists))
        time.sleep(2)
    raise SystemExit(f"lists not computed ahead after {timeout:.0f} s")


def _wait_ready(port: int, proc: subprocess.Popen[bytes], path: str, timeout: float) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"server on port {port} not ready after {timeout:.0f} s")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accounts", type=int, default=100_000, help="accounts per platform")
    ap.add_argument("--events-per-account", type=int, default=10)
    ap.add_argument("--rate", type=float, default=500.0, help="offered requests per second")
    ap.add_argument("--seconds", type=float, default=60.0, help="length of the latency run")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument(
        "--distinct", type=int, default=15_000, help="accounts per platform in the load run"
    )
    ap.add_argument("--freshness-trials", type=int, default=100)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--dir", type=Path, default=None, help="scratch folder, reused if built")
    ap.add_argument("--json", action="store_true", help="write bench/out/serve.json")
    ap.add_argument(
        "--routes-only",
        action="store_true",
        help="only the profile, links and similar medians (no load, throughput or freshness)",
    )
    ap.add_argument("--route-samples", type=int, default=20, help="requests per route")
    args = ap.parse_args(argv)

    root = args.dir or Path(tempfile.mkdtemp(prefix="crossrec-bench-serve-"))
    root.mkdir(parents=True, exist_ok=True)
    figures: dict[str, object] = {
        "accounts_per_platform": args.accounts,
        "events_per_account": args.events_per_account,
        "cpus": os.cpu_count(),
    }
    if not (root / "ws" / "models" / "CURRENT").exists():
        figures["build"] = build(root, args.accounts, args.events_per_account, args.seed)

    from crossrec.serve.auth import create_token
    from crossrec.workspace import Workspace

    with Workspace(root / "ws") as ws:
        token, _ = create_token(ws.store, ("read", "write"), "bench")
    headers = {"Authorization": f"Bearer {token}"}
    # distinct accounts of both platforms, so that nearly every request asks for another list
    accounts = raw_accounts(root, args.distinct, args.seed)
    music = raw_accounts(root, args.distinct, args.seed, "music")
    paths = [
        f"/v1/platforms/{platform}/accounts/{a}/recommendations?k=10"
        for pair in zip(accounts, music, strict=False)
        for platform, a in zip(("video", "music"), pair, strict=True)
    ]

    port, bare_port = _free_port(), _free_port()
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    log = (root / "serve.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "crossrec", "serve", "-w", str(root / "ws"), "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    (root / "bare_app.py").write_text(BARE_APP)
    bare = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bare_app:app", "--port", str(bare_port),
         "--log-level", "warning"],
        cwd=root,
        env=env,
    )  # fmt: skip
    try:
        t = time.perf_counter()
        _wait_ready(port, server, "/readyz", 600)
        figures["server_ready_s"] = round(time.perf_counter() - t, 1)
        _wait_ready(bare_port, bare, "/docs", 60)
        t = time.perf_counter()
        figures["precomputed_lists"] = _wait_precomputed(port, headers, 3600)
        figures["precompute_s"] = round(time.perf_counter() - t, 1)
        asyncio.run(closed_loop(port, paths, headers, 3, 8))  # warm-up
        if args.routes_only:
            figures["other_routes"] = asyncio.run(
                route_latency(port, headers, accounts, args.route_samples)
            )
            return _report(figures, args.json)
        figures["latency"] = asyncio.run(
            open_loop(port, paths, headers, args.rate, args.seconds, args.connections)
        )
        secs = 15
        rec = wrk_throughput(f"http://127.0.0.1:{port}{paths[0]}", token, secs, 32)
        base = wrk_throughput(f"http://127.0.0.1:{bare_port}{paths[0]}", token, secs, 32)
        tool = "wrk -t2 -c32"
        if rec is None or base is None:
            tool = "python closed loop, 32 connections"
            rec = asyncio.run(closed_loop(port, paths, headers, secs, 32))
            base = asyncio.run(closed_loop(bare_port, paths, headers, secs, 32))
        figures["throughput"] = {
            "tool": tool,
            "recommendations_per_s": round(rec, 1),
            "bare_fastapi_per_s": round(base, 1),
            "ratio": round(rec / base, 3),
        }
        figures["other_routes"] = asyncio.run(
            route_latency(port, headers, accounts, args.route_samples)
        )
        figures["freshness"] = asyncio.run(
            freshness(port, headers, accounts[-args.freshness_trials :], args.freshness_trials)
        )
    finally:
        for proc in (server, bare):
            proc.terminate()
            proc.wait(timeout=60)
        log.close()
    return _report(figures, args.json)


def _report(figures: dict[str, object], write: bool) -> int:
    print(json.dumps(figures, indent=2))
    if write:
        out = Path(__file__).resolve().parent / "out"
        out.mkdir(exist_ok=True)
        name = "serve-routes.json" if "latency" not in figures else "serve.json"
        (out / name).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
