"""Soak: the real HTTP server under mixed POST/GET/DELETE from many clients, then an audit.

Starts ``crossrec serve`` (uvicorn, bound to 127.0.0.1 only) on a fresh workspace and runs
``--clients`` closed-loop clients (default 32) for ``--seconds`` (default 600), each on its
own keep-alive connection and its own accounts, so every answer can be checked:

* ``POST /v1/platforms/{p}/events``: 1-8 events with unique ``event_id`` for the client's live
  accounts (ids with spaces and ``/`` among them); the ``accepted`` count of each 200 answer
  is what the client holds as acknowledged;
* ``GET .../accounts/{id}/profile`` and ``.../links`` of a live account (percent-encoded id);
* ``DELETE .../accounts/{id}`` of a live account (its acknowledged events are then none);
* ``POST`` of events for an erased account: must be quarantined as ``erased`` (``accepted``
  0).

Every loop is bounded in requests (``--max-requests`` per client) and time (the deadline and a
per-request timeout). Afterwards the server is stopped and the store is audited: each live
account holds exactly its acknowledged events, no erased account has any event or row, and
no answer was a 5xx; latency percentiles per route are reported (milliseconds, closed loop:
a request is timed from its send to its answer).

    .venv/bin/python bench/soak.py --seconds 60          # a quick run
    .venv/bin/python bench/soak.py --json                # 10 minutes, figures to bench/out/
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import numpy as np

PLATFORMS = ("video", "music")
#: Operation mix: (name, weight).
MIX = (("post", 55), ("profile", 20), ("links", 15), ("delete", 5), ("post_erased", 5))
POSTS = ("post", "post_erased")


class Conn:
    """One keep-alive HTTP/1.1 connection; requests on it go one at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Conn:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def request(
        self, method: str, path: str, headers: dict[str, str], body: bytes = b""
    ) -> tuple[int, bytes]:
        head = f"{method} {path} HTTP/1.1\r\nHost: soak\r\nContent-Length: {len(body)}\r\n"
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


@dataclass
class Client:
    """One client's accounts and what the server acknowledged to it."""

    n: int
    rng: random.Random
    live: dict[tuple[str, str], int] = field(default_factory=dict)  # acked events
    erased: set[tuple[str, str]] = field(default_factory=set)
    uncertain: set[tuple[str, str]] = field(default_factory=set)  # a POST without answer
    #: a DELETE without answer: the account is then either erased or as acknowledged
    unanswered_delete: set[tuple[str, str]] = field(default_factory=set)
    next_account: int = 0
    next_event: int = 0

    def new_account(self) -> tuple[str, str]:
        j = self.next_account
        self.next_account += 1
        platform = PLATFORMS[j % 2]
        raw = (f"c{self.n}-a{j}", f" c{self.n} a{j}", f"c{self.n}/a{j}")[j % 3]
        key = (platform, raw)
        self.live[key] = 0
        return key

    def pick_live(self) -> tuple[str, str]:
        if len(self.live) < 4 or self.rng.random() < 0.05:
            return self.new_account()
        return self.rng.choice(list(self.live))

    def events(self, raw: str, n: int) -> list[dict[str, object]]:
        out = []
        for _ in range(n):
            self.next_event += 1
            out.append(
                {
                    "account": raw,
                    "item": f"i{self.rng.randrange(500)}",
                    "value": self.rng.randrange(1, 6),
                    "timestamp": 1_700_000_000 + self.next_event,
                    "event_id": f"c{self.n}-e{self.next_event}",
                }
            )
        return out


@dataclass
class Tally:
    latency: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    status: dict[str, dict[int, int]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(int))
    )
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    erased_posts: int = 0
    erased_posts_stored: int = 0


async def run_client(
    c: Client, port: int, headers: dict[str, str], deadline: float, cap: int, timeout: float,
    tally: Tally,
) -> None:  # fmt: skip
    conn = await Conn.open(port)
    names = [m for m, _ in MIX]
    weights = [w for _, w in MIX]
    try:
        for _ in range(cap):
            if time.monotonic() >= deadline:
                break
            op = c.rng.choices(names, weights)[0]
            stored = [k for k, n in c.live.items() if n > 0]  # reads and erasures need events
            if (op == "post_erased" and not c.erased) or (op not in POSTS and not stored):
                op = "post"
            if op == "post_erased":
                key = c.rng.choice(sorted(c.erased))
            elif op == "post":
                key = c.pick_live()
            else:
                key = c.rng.choice(stored)
            platform, raw = key
            acct = f"/v1/platforms/{platform}/accounts/{quote(raw, safe='')}"
            if op in POSTS:
                body = json.dumps(c.events(raw, c.rng.randrange(1, 9))).encode()
                method, path, route = "POST", f"/v1/platforms/{platform}/events", "POST events"
            elif op == "delete":
                method, path, body, route = "DELETE", acct, b"", "DELETE account"
            else:
                method, path, body, route = "GET", f"{acct}/{op}", b"", f"GET {op}"
            hdrs = {**headers, "Content-Type": "application/json"} if body else headers
            sent = time.perf_counter()
            try:
                status, answer = await asyncio.wait_for(
                    conn.request(method, path, hdrs, body), timeout
                )
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
                tally.errors[f"{route}: {type(exc).__name__}"] += 1
                if method == "POST":
                    c.uncertain.add(key)
                elif method == "DELETE":
                    c.unanswered_delete.add(key)
                conn.close()
                conn = await Conn.open(port)
                continue
            tally.latency[route].append((time.perf_counter() - sent) * 1000)
            tally.status[route][status] += 1
            if status != 200:
                continue
            doc = json.loads(answer)
            if op == "post":
                c.live[key] += int(doc["accepted"])
            elif op == "post_erased":
                tally.erased_posts += 1
                tally.erased_posts_stored += int(doc["accepted"])
            elif op == "delete":
                del c.live[key]
                c.erased.add(key)
    finally:
        conn.close()


def audit(root: Path, clients: list[Client]) -> dict[str, object]:
    from crossrec.workspace import Workspace

    mismatched: list[str] = []
    live = erased = uncertain = events = either = 0
    with Workspace(root) as ws:
        store = ws.store
        for c in clients:
            for (platform, raw), acked in c.live.items():
                if (platform, raw) in c.uncertain:
                    uncertain += 1
                    continue
                live += 1
                pseud = ws.account_id(platform, raw)
                n = store.account_events(platform, pseud).num_rows
                events += n
                if (platform, raw) in c.unanswered_delete and n == 0:
                    either += 1  # the erasure went through after the client gave up
                    if store.has_account(platform, pseud):
                        mismatched.append(f"{platform}/{raw!r}: half erased")
                    continue
                if n != acked:
                    mismatched.append(f"{platform}/{raw!r}: stored {n}, acknowledged {acked}")
            for platform, raw in c.erased:
                erased += 1
                pseud = ws.account_id(platform, raw)
                if (
                    store.has_account(platform, pseud)
                    or store.account_events(platform, pseud).num_rows
                ):
                    mismatched.append(f"{platform}/{raw!r}: erased but present")
        quarantined_erased = sum(
            1 for r in ws.quarantine().list(limit=10**7) if r["reason"] == "erased"
        )
    return {
        "live_accounts_checked": live,
        "erased_accounts_checked": erased,
        "accounts_with_unanswered_posts": uncertain,
        "accounts_erased_after_an_unanswered_delete": either,
        "events_stored_checked": events,
        "mismatches": mismatched[:20],
        "mismatch_count": len(mismatched),
        "quarantined_as_erased": quarantined_erased,
    }


def _free_port() -> int:
    with closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"server on port {port} not ready after {timeout:.0f} s")


def _percentiles(values: list[float]) -> dict[str, float]:
    a = np.asarray(values)
    return {
        "count": int(a.size),
        "p50_ms": round(float(np.percentile(a, 50)), 2),
        "p95_ms": round(float(np.percentile(a, 95)), 2),
        "p99_ms": round(float(np.percentile(a, 99)), 2),
        "max_ms": round(float(a.max()), 2),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=600.0, help="length of the run")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--max-requests", type=int, default=200_000, help="per client")
    ap.add_argument("--timeout", type=float, default=120.0, help="per request, seconds")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--dir", type=Path, help="work here (default: a temporary folder)")
    ap.add_argument("--json", action="store_true", help="also write bench/out/soak.json")
    args = ap.parse_args(argv)

    from crossrec.serve.auth import create_token
    from crossrec.workspace import Workspace

    root = (args.dir or Path(tempfile.mkdtemp(prefix="crossrec-soak-"))) / "ws"
    Workspace.init(root).close()
    cfg = root / "crossrec.toml"
    text = cfg.read_text()  # many clients share one token: no rate limit in the way
    text = text.replace("rate_limit_per_second = 1000.0", "rate_limit_per_second = 1000000.0")
    cfg.write_text(text.replace("rate_limit_burst = 2000", "rate_limit_burst = 1000000"))
    with Workspace(root) as ws:
        token, _ = create_token(ws.store, ("read", "write"), "soak")
    headers = {"Authorization": f"Bearer {token}"}

    port = _free_port()
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    log = (root.parent / "serve.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "crossrec", "serve", "-w", str(root), "--host", "127.0.0.1",
         "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    clients = [Client(n, random.Random(args.seed * 1000 + n)) for n in range(args.clients)]
    tally = Tally()
    try:
        _wait_ready(port, server, 120)
        started = time.monotonic()
        deadline = started + args.seconds

        async def everyone() -> None:
            await asyncio.gather(
                *(
                    run_client(c, port, headers, deadline, args.max_requests, args.timeout, tally)
                    for c in clients
                )
            )

        asyncio.run(everyone())
        elapsed = time.monotonic() - started
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
    statuses = {r: dict(sorted(s.items())) for r, s in sorted(tally.status.items())}
    fivexx = sum(n for s in tally.status.values() for code, n in s.items() if code >= 500)
    requests = sum(len(v) for v in tally.latency.values())
    figures: dict[str, object] = {
        "seconds": round(elapsed, 1),
        "clients": args.clients,
        "requests": requests,
        "requests_per_s": round(requests / elapsed, 1),
        "status": statuses,
        "5xx": fivexx,
        "client_errors": dict(tally.errors),
        "latency": {r: _percentiles(v) for r, v in sorted(tally.latency.items())},
        "erased_posts": tally.erased_posts,
        "erased_posts_stored": tally.erased_posts_stored,
        "audit": audit(root, clients),
        "server_exit": server.returncode,
        "cpus": os.cpu_count(),
    }
    print(json.dumps(figures, indent=2))
    if args.json:
        out = Path(__file__).parent / "out"
        out.mkdir(exist_ok=True)
        (out / "soak.json").write_text(json.dumps(figures, indent=2) + "\n")
    audit_doc = figures["audit"]
    assert isinstance(audit_doc, dict)
    ok = fivexx == 0 and audit_doc["mismatch_count"] == 0 and tally.erased_posts_stored == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
