"""A file's quarantine rows commit and roll back with its events: after a crash (an error in
the store write, or `kill -9` of `crossrec ingest` at any moment) the workspace holds the
file's events and bad rows, or neither; ingesting the file again completes it exactly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO, write

GOOD, BAD = 150_000, 40


def _file(path):
    with path.open("wb") as fh:
        fh.write(b"account,item,value\n")
        for i in range(GOOD):
            fh.write(f"u{i % 3000},i{i},{i % 5}\n".encode())
            if i % (GOOD // BAD) == 0:
                fh.write(f"b{i},i{i},not-a-number\n".encode())
    return path


def _state(root):
    from crossrec.workspace import Workspace

    with Workspace(root) as ws:
        return ws.store.count("events"), ws.quarantine().count()


def test_an_error_before_the_commit_leaves_no_quarantine_row(ws, tmp_path, monkeypatch):
    from crossrec.store.duckdb import DuckDBStore

    f = write(tmp_path / "e.csv", "account,item,value\na,x,1\nb,y,oops\nc,z,\n")

    def boom(self, row):
        raise RuntimeError("power cut")

    monkeypatch.setattr(DuckDBStore, "log_ingest", boom)  # the store write's last step
    with pytest.raises(RuntimeError):
        ws.ingest_events("p", f)
    assert (ws.store.count("events"), ws.quarantine().count()) == (0, 0)
    monkeypatch.undo()
    [s] = ws.ingest_events("p", f)
    assert (s.accepted, s.quarantined) == (2, 1)
    assert ws.quarantine().count() == 1


def test_bad_rows_lost_after_the_events_committed_come_back_on_a_second_ingest(ws, tmp_path):
    f = write(tmp_path / "e.csv", "account,item,value\na,x,1\nb,y,oops\n")
    ws.ingest_events("p", f)
    ws.quarantine().purge()  # as a crash between the two commits would leave it
    [s] = ws.ingest_events("p", f)
    assert (s.accepted, s.duplicates, s.quarantined) == (0, 1, 1)
    assert ws.quarantine().count() == 1


@pytest.mark.slow
def test_kill_9_of_ingest_keeps_events_and_bad_rows_together(tmp_path):
    from crossrec.workspace import Workspace

    data = _file(tmp_path / "events.csv")
    root = tmp_path / "ws"
    Workspace.init(root).close()

    def argv(ws_root):
        ws_args = ["--workspace", str(ws_root), "--platform", "p", "--events", str(data)]
        return [sys.executable, "-m", "crossrec", "ingest", *ws_args]

    seen = set()
    started = time.monotonic()
    subprocess.run(argv(root), cwd=REPO, capture_output=True, check=True)  # a whole run's time
    whole = time.monotonic() - started
    assert _state(root) == (GOOD, BAD)
    for i in range(8):
        # a fresh workspace each time, killed at a growing fraction of a whole run
        root = tmp_path / f"ws{i}"
        Workspace.init(root).close()
        proc = subprocess.Popen(
            argv(root), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        time.sleep(whole * (0.45 + 0.08 * i))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        state = _state(root)
        assert state in ((0, 0), (GOOD, BAD)), state  # all or nothing, bad rows included
        seen.add(state)
        done = subprocess.run(argv(root), cwd=REPO, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert _state(root) == (GOOD, BAD)
    assert (0, 0) in seen  # at least one kill landed before the commit
