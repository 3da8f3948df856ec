"""One writer per workspace (the lock file) and the read gate erasure closes."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from crossrec.errors import WorkspaceError
from crossrec.serve.gate import ReadGate
from crossrec.store.lock import LOCK_FILE, WriterLock


def test_a_second_writer_fails_fast_naming_the_first(tmp_path):
    with WriterLock(tmp_path, command="crossrec serve") as first:
        assert first.held
        assert (tmp_path / LOCK_FILE).read_text() == f"{os.getpid()} crossrec serve\n"
        with pytest.raises(WorkspaceError) as info:
            WriterLock(tmp_path, command="crossrec ingest").acquire()
        message = str(info.value)
        assert f"is being written by pid {os.getpid()} (crossrec serve)" in message
        assert "stop it" in message and "\n" not in message
    # released: the next writer gets it, and the file no longer names anyone
    assert (tmp_path / LOCK_FILE).read_text() == ""
    with WriterLock(tmp_path):
        pass


def test_the_lock_dies_with_its_process(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from crossrec.store.lock import WriterLock; "
            f"WriterLock({str(tmp_path)!r}, command='crossrec consume').acquire(); "
            "print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(WorkspaceError, match=rf"pid {holder.pid} \(crossrec consume\)"):
            WriterLock(tmp_path).acquire()
    finally:
        holder.kill()
        holder.wait()
    # killed without releasing: the kernel dropped the lock, the stale file blocks no one
    with WriterLock(tmp_path):
        pass


def test_reads_share_the_gate_and_exclusive_waits_for_them():
    gate = ReadGate()
    order: list[str] = []
    reading = threading.Event()
    release_reader = threading.Event()

    def reader() -> None:
        with gate.read():
            reading.set()
            release_reader.wait(5)
            order.append("reader done")

    def eraser() -> None:
        with gate.exclusive():
            order.append("exclusive")

    t1 = threading.Thread(target=reader)
    t1.start()
    assert reading.wait(5)
    with gate.read():  # a second reader is not blocked by the first
        order.append("second reader")
    t2 = threading.Thread(target=eraser)
    t2.start()
    time.sleep(0.05)
    assert "exclusive" not in order  # waits for the reader in flight
    release_reader.set()
    t1.join(5)
    t2.join(5)
    assert order == ["second reader", "reader done", "exclusive"]


def test_new_reads_wait_while_exclusive_is_held():
    gate = ReadGate()
    order: list[str] = []
    entered = threading.Event()
    leave = threading.Event()

    def eraser() -> None:
        with gate.exclusive():
            entered.set()
            leave.wait(5)
            order.append("exclusive done")

    def reader() -> None:
        with gate.read():
            order.append("read")

    t1 = threading.Thread(target=eraser)
    t1.start()
    assert entered.wait(5)
    t2 = threading.Thread(target=reader)
    t2.start()
    time.sleep(0.05)
    assert order == []
    leave.set()
    t1.join(5)
    t2.join(5)
    assert order == ["exclusive done", "read"]


def test_guarded_index_searches_while_another_thread_upserts():
    import numpy as np

    from crossrec.index import ExactIndex
    from crossrec.serve.gate import GuardedIndex

    rng = np.random.default_rng(0)
    base = rng.normal(size=(2_000, 16)).astype(np.float32)
    index = GuardedIndex(ExactIndex(16).build(base, np.arange(2_000, dtype=np.int64)))
    failures: list[BaseException] = []
    done = threading.Event()

    def searcher() -> None:
        try:
            while not done.is_set():
                _, ids = index.search(base[:4], 5)
                assert ids.shape == (4, 5) and (ids >= 0).all()
                assert len(index) == 2_000
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=searcher) for _ in range(3)]
    for t in threads:
        t.start()
    last = base[:1]
    for i in range(300):  # replace vectors in place: the count never changes
        last = rng.normal(size=(1, 16)).astype(np.float32)
        index.upsert(last, np.asarray([i], np.int64))
    done.set()
    for t in threads:
        t.join(10)
    assert failures == []
    # the wrapped index took the changes
    _, ids = index.search(last, 1)
    assert ids[0, 0] == 299
