"""Training inside the running server: on request or on a schedule, swapped in while requests
go on; failures counted and the served model kept; accounts erased during a training are not
in the version it publishes; ``crossrec train`` against a running ``crossrec serve``."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import pytest

from tests.test_serve_common import serve, world_of
from tests.test_serve_uvicorn import _free_port, _get


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return world_of(tmp_path_factory)


def test_a_retrain_request_is_served_while_requests_go_on(world, tmp_path):
    with serve(world, tmp_path / "ws") as s:
        state = s.state
        assert state.model.version == "v0001"
        account = world.accounts["video"][0]
        url = f"/v1/platforms/video/accounts/{account}/recommendations?k=5"
        statuses: list[int] = []
        versions: set[str] = set()
        stop = threading.Event()

        def load() -> None:  # requests in flight during the training and the swap
            while not stop.is_set():
                r = s.client.get(url, headers=s.auth("read"))
                statuses.append(r.status_code)
                if r.status_code == 200:
                    versions.add(r.json()["model_version"])

        worker = threading.Thread(target=load)
        worker.start()
        try:
            ticket = state.retrainer.request()
            assert state.retrainer.wait(ticket, timeout=240)
            time.sleep(0.2)
        finally:
            stop.set()
            worker.join()
        assert state.retrainer.last_error is None
        assert state.model.version == "v0002"
        assert (s.root / "models" / "CURRENT").read_text().strip() == "v0002"
        assert statuses and set(statuses) == {200}
        assert "v0002" in versions
        r = s.client.get(url, headers=s.auth("read"))
        assert r.json()["model_version"] == "v0002"
        metrics = s.client.get("/metrics", headers=s.auth("read")).text
        assert 'crossrec_retrains_total{result="ok"} 1.0' in metrics
        assert "crossrec_retrain_running 0.0" in metrics
        assert "crossrec_model_swaps_total 1.0" in metrics
        # the training's progress file is gone once it ends
        assert not (s.root / ".control" / "training.json").exists()


def test_a_failed_training_is_counted_and_the_model_stays(world, tmp_path, monkeypatch):
    import crossrec.train

    def broken(ws, *, progress=None):
        ws.store.read("events")  # reads go through the server's cursor
        raise RuntimeError("out of disk")

    monkeypatch.setattr(crossrec.train, "train", broken)
    with serve(world, tmp_path / "ws") as s:
        ticket = s.state.retrainer.request()
        assert s.state.retrainer.wait(ticket, timeout=60)
        assert "out of disk" in (s.state.retrainer.last_error or "")
        assert s.state.model.version == "v0001"
        r = s.client.get(
            f"/v1/platforms/video/accounts/{world.accounts['video'][0]}/recommendations",
            headers=s.auth("read"),
        )
        assert r.status_code == 200 and r.json()["model_version"] == "v0001"
        metrics = s.client.get("/metrics", headers=s.auth("read")).text
        assert 'crossrec_retrains_total{result="failed"} 1.0' in metrics


def test_an_erasure_interrupts_a_training_which_starts_again_without_the_account(
    world, tmp_path, monkeypatch
):
    import crossrec.train
    from crossrec.represent.profiles import AccountProfiles

    raw = world.accounts["video"][3]
    real = crossrec.train._build_indexes
    erasing: list[threading.Thread] = []
    erased: dict[str, object] = {}

    def erase_midway(ws, profiles, out, hook):
        if not erasing:  # the first run only: its profiles hold the account
            assert profiles.row("video", ws.account_id("video", raw)) is not None
            eraser = threading.Thread(target=lambda: erased.update(s.state.forget("video", raw)))
            erasing.append(eraser)
            eraser.start()
            while not s.state._interrupted():  # the DELETE is waiting on this training
                time.sleep(0.01)
        return real(ws, profiles, out, hook)

    monkeypatch.setattr(crossrec.train, "_build_indexes", erase_midway)
    with serve(world, tmp_path / "ws") as s:
        pseudonym = s.state.account_id("video", raw)
        ticket = s.state.retrainer.request()
        assert s.state.retrainer.wait(ticket, timeout=240)
        erasing[0].join(timeout=60)
        assert s.state.retrainer.last_error is None, s.state.retrainer.last_error
        assert erased["accounts"] == [["video", pseudonym]]
        assert s.state.model.version == "v0002"
        assert not list((s.root / "models").glob(".tmp-*"))
        for version in ("v0001", "v0002"):
            profiles = AccountProfiles.load(s.root / "models" / version / "accounts")
            assert profiles.row("video", pseudonym) is None, version
        assert len(AccountProfiles.load(s.root / "models" / "v0002" / "accounts")) > 100
        r = s.client.get(f"/v1/platforms/video/accounts/{raw}/profile", headers=s.auth("read"))
        assert r.status_code == 404
        metrics = s.client.get("/metrics", headers=s.auth("read")).text
        assert 'crossrec_retrains_total{result="ok"} 1.0' in metrics
        assert 'result="failed"' not in metrics


@pytest.mark.slow
def test_train_and_token_commands_against_a_running_server(world, tmp_path):
    from tests.test_serve_common import copy_world

    root = copy_world(world, tmp_path / "ws")

    def crossrec(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "crossrec", *args], capture_output=True, text=True, timeout=300
        )

    port = _free_port()
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "crossrec", "serve", "--workspace", str(root), "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()
            try:
                if _get(base + "/readyz")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.3)
        # a token made while the server runs works at once
        made = crossrec("token", "create", "--workspace", str(root), "--scope", "read")
        assert made.returncode == 0, made.stderr
        token = made.stdout.strip()
        url = base + f"/v1/platforms/video/accounts/{world.accounts['video'][0]}/recommendations"
        assert _get(url, token)[0] == 200
        listed = json.loads(crossrec("token", "list", "--workspace", str(root), "--json").stdout)
        assert [t["scopes"] for t in listed] == ["read"]

        trained = crossrec("train", "--workspace", str(root), "--json")
        assert trained.returncode == 0, trained.stderr
        meta = json.loads(trained.stdout)
        assert meta["version"] == "v0002" and meta["data"]["events"] > 0
        assert "the server (pid" in trained.stderr
        # answered once the new version is served
        assert _get(base + "/readyz")[1]["model_version"] == "v0002"
        code, doc = _get(url, token)
        assert code == 200 and doc["model_version"] == "v0002"

        # another writer still fails fast; link takes the lock too
        linked = crossrec("link", "--workspace", str(root))
        assert linked.returncode != 0 and "crossrec serve" in linked.stderr

        revoked = crossrec("token", "revoke", "--workspace", str(root), listed[0]["id"])
        assert revoked.returncode == 0, revoked.stderr
        assert _get(url, token)[0] == 401  # refused at once: the server revoked it itself
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        log.close()
    # no server: train runs itself, as before
    trained = crossrec("train", "--workspace", str(root), "--json")
    assert trained.returncode == 0, trained.stderr
    assert json.loads(trained.stdout)["version"] == "v0003"


class StubState:
    """What the Retrainer needs of a ServeState, with a training that takes ``seconds``."""

    def __init__(self, root, seconds: float = 0.3) -> None:
        from types import SimpleNamespace

        from crossrec.serve.metrics import Metrics

        self.ws = SimpleNamespace(root=root)
        self.metrics = Metrics()
        self.model = None
        self.seconds = seconds
        self.trained: list[float] = []
        self.interrupt_next = False

    def train_now(self, *, progress=None):
        from crossrec.serve.retrain import TrainingInterrupted

        progress.task("training", total=1).advance()
        time.sleep(self.seconds)
        if self.interrupt_next:
            self.interrupt_next = False
            raise TrainingInterrupted("an erasure interrupted the training")
        self.trained.append(time.monotonic())
        return {"version": f"v{len(self.trained):04d}", "seconds": self.seconds}

    def control(self, op, args):
        return {"op": op}


def test_requests_during_a_training_get_the_next_one_and_one_runs_at_a_time(tmp_path):
    from crossrec.serve import control
    from crossrec.serve.retrain import Retrainer

    state = StubState(tmp_path)
    retrainer = Retrainer(state)  # no schedule: on request only
    retrainer.start()
    try:
        first = control.submit(tmp_path, "train")
        while not retrainer.running:
            time.sleep(0.01)
        # arrives while the first runs: answered by a second training, not the first
        second = control.submit(tmp_path, "train")
        third = control.submit(tmp_path, "train")
        alive = lambda: True  # noqa: E731
        assert control.wait_answer(tmp_path, first, alive=alive, timeout=10)["version"] == "v0001"
        assert control.wait_answer(tmp_path, second, alive=alive, timeout=10)["version"] == "v0002"
        assert control.wait_answer(tmp_path, third, alive=alive, timeout=10)["version"] == "v0002"
        assert len(state.trained) == 2
        # a token job is answered at once, even while a training runs
        ticket = retrainer.request()
        token_job = control.submit(tmp_path, "token-list")
        t = time.monotonic()
        assert control.wait_answer(tmp_path, token_job, alive=alive, timeout=10) == {
            "op": "token-list"
        }
        assert retrainer.wait(ticket, timeout=10)
        assert time.monotonic() - t < 5
        assert not list((tmp_path / ".control").glob("*.json"))  # every file consumed
    finally:
        retrainer.stop()


def test_periodic_retraining_and_an_interrupted_one_starts_again(tmp_path):
    from crossrec.serve.retrain import Retrainer

    state = StubState(tmp_path, seconds=0.05)
    state.interrupt_next = True
    retrainer = Retrainer(state, every_seconds=0.5)
    retrainer.start()
    try:
        deadline = time.monotonic() + 20
        while len(state.trained) < 3:
            assert time.monotonic() < deadline, state.trained
            time.sleep(0.05)
    finally:
        retrainer.stop()
    gaps = [b - a for a, b in zip(state.trained, state.trained[1:], strict=False)]
    assert all(g >= 0.45 for g in gaps), gaps  # counted from the end of the previous one
    text = state.metrics.render().decode()
    assert 'crossrec_retrains_total{result="ok"}' in text
    assert 'result="failed"' not in text  # an interruption is not a failure


def test_a_waiting_command_learns_when_the_server_is_gone(tmp_path):
    from crossrec.errors import WorkspaceError
    from crossrec.serve import control

    request = control.submit(tmp_path, "train")
    with pytest.raises(WorkspaceError, match="stopped before answering"):
        control.wait_answer(tmp_path, request, alive=lambda: False, timeout=10)
    assert not list((tmp_path / ".control").glob("*.request.json"))  # withdrawn
