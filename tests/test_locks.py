"""Commands that find the store or the quarantine held by another process wait a few seconds,
then name the holder in one line; a damaged store gets one line saying what to do."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, write

CROSSREC = [str(REPO / ".venv" / "bin" / "crossrec")]

HOLD = """
import sys, time, duckdb
from crossrec.store.lock import WriterLock
path, seconds, command = sys.argv[1], float(sys.argv[2]), sys.argv[3]
lock = WriterLock(sys.argv[4], command=command).acquire() if command else None
con = duckdb.connect(path)
print("ready", flush=True)
time.sleep(seconds)
con.close()
"""


def _hold(path: Path, seconds: float, command: str = "") -> subprocess.Popen[str]:
    """A process that holds ``path`` open for ``seconds`` (and with ``command`` the
    workspace writer lock under that name)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path), str(seconds), command, str(path.parent)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def _run(args: list[str], wait: float = 0.5) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CROSSREC_LOCK_WAIT": str(wait)}
    return subprocess.run(CROSSREC + args, capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture
def root(ws, tmp_path) -> Path:
    ws.ingest_events("video", write(tmp_path / "e.csv", "account,item,value\na,x,1\nb,y,oops\n"))
    ws.close()
    return ws.root


def _one_line(r: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


def test_a_held_store_names_its_holder(root):
    holder = _hold(root / "crossrec.duckdb", 60, "crossrec serve")
    try:
        started = time.monotonic()
        r = _run(["stats", "--workspace", str(root)], wait=0.5)
        assert time.monotonic() - started >= 0.5  # it waited before giving up
    finally:
        holder.kill()
        holder.wait()
    assert r.returncode == 2
    line = _one_line(r)
    assert f"is in use by pid {holder.pid} (crossrec serve)" in line
    assert "CROSSREC_LOCK_WAIT" in line


def test_a_held_quarantine_is_waited_for_then_named(root):
    quarantine = root / "quarantine.duckdb"
    brief = _hold(quarantine, 1.0)  # lets go within the wait: the command just works
    r = _run(["quarantine", "list", "--workspace", str(root), "--json"], wait=10)
    brief.wait()
    assert r.returncode == 0, r.stderr
    assert '"total": 1' in r.stdout

    holder = _hold(quarantine, 60)
    try:
        for args in (["quarantine", "list"], ["quarantine", "purge"], ["stats"]):
            r = _run([*args, "--workspace", str(root)], wait=0.3)
            assert r.returncode == 2
            line = _one_line(r)
            assert f"the quarantine {quarantine} is in use by pid {holder.pid}" in line
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        (lambda b: b"", "is empty"),
        (lambda b: b[: len(b) // 2], "is damaged or truncated"),
        (lambda b: b"not a database" * 100, "is damaged or truncated"),
    ],
)
def test_a_damaged_store_gets_one_line_saying_what_to_do(root, damage, says):
    store = root / "crossrec.duckdb"
    store.write_bytes(damage(store.read_bytes()))
    r = _run(["stats", "--workspace", str(root)])
    assert r.returncode == 2
    line = _one_line(r)
    assert f"the store {store} {says}" in line
    assert "restore it from a backup" in line
    assert "another process" not in line  # no misleading lock hint


def test_ingest_while_the_quarantine_is_held_stops_in_one_line_and_stores_nothing(root, tmp_path):
    events = write(tmp_path / "more.csv", "account,item,value\nc,z,1\nd,w,bad\n")
    holder = _hold(root / "quarantine.duckdb", 60)
    try:
        args = ["ingest", "--workspace", str(root), "--platform", "video", "--events"]
        r = _run([*args, str(events)], wait=0.3)
    finally:
        holder.kill()
        holder.wait()
    assert r.returncode == 2 and "Traceback" not in r.stderr
    # (the progress bar also goes to stderr)
    [line] = [x for x in r.stderr.splitlines() if x.startswith("error:")]
    assert f"is in use by pid {holder.pid}" in line
    # the file's events and its bad row go together: neither was kept, a retry stores both
    r = _run([*args, str(events), "--json"])
    assert r.returncode == 0, r.stderr
    assert '"accepted": 1' in r.stdout and '"quarantined": 1' in r.stdout
