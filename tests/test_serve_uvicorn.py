"""``crossrec serve`` as a real process: it answers over TCP, refuses an oversized upload
without reading it, holds the workspace's writer lock, and releases it when stopped."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import closing

import pytest

from tests.test_serve_common import copy_world, world_of


def crossrec(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crossrec", *args], capture_output=True, text=True, timeout=120
    )


def _free_port() -> int:
    with closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, token: str | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = copy_world(world_of(tmp_path_factory), tmp_path_factory.mktemp("uvicorn") / "ws")
    made = crossrec("token", "create", "--workspace", str(root), "--scope", "read,write")
    assert made.returncode == 0, made.stderr
    port = _free_port()
    log = (root.parent / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "crossrec", "serve", "--workspace", str(root), "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert proc.poll() is None, (root.parent / "server.log").read_text()
        try:
            if _get(base + "/readyz")[0] == 200:
                break
        except OSError:
            pass
        time.sleep(0.3)
    else:
        proc.kill()
        pytest.fail("server not ready in 90 s: " + (root.parent / "server.log").read_text())
    yield {"base": base, "port": port, "token": made.stdout.strip(), "root": root, "proc": proc}
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    log.close()


def test_serves_over_tcp(server):
    code, doc = _get(
        server["base"] + "/v1/platforms/video/accounts/someone/recommendations?k=3", server["token"]
    )
    assert code == 200 and len(doc["items"]) == 3 and doc["model_version"] == "v0001"
    code, doc = _get(server["base"] + "/metrics")
    assert code == 401 and set(doc) == {"error", "field"}


def test_oversized_upload_is_refused_without_reading_it(server):
    declared = 50 * 1024 * 1024
    with closing(socket.create_connection(("127.0.0.1", server["port"]), timeout=10)) as s:
        s.sendall(
            b"POST /v1/platforms/video/events HTTP/1.1\r\nHost: x\r\n"
            + f"Authorization: Bearer {server['token']}\r\n".encode()
            + f"Content-Type: application/json\r\nContent-Length: {declared}\r\n\r\n".encode()
            + b"["
            + b" " * 4096
        )
        answer = s.recv(65536).decode("latin-1")  # answered with 50 MiB still unsent
        while "\r\n\r\n" in answer and not answer.rstrip().endswith("}"):
            more = s.recv(65536).decode("latin-1")  # the body may follow the head
            if not more:
                break
            answer += more
    status_line, _, rest = answer.partition("\r\n")
    assert status_line == "HTTP/1.1 413 Request Entity Too Large" or " 413 " in status_line
    assert '"field":"body"' in rest.replace(" ", "")


def test_streamed_upload_is_cut_off_at_the_limit(server):
    chunk = b" " * 65536
    sent = 0
    with closing(socket.create_connection(("127.0.0.1", server["port"]), timeout=10)) as s:
        s.sendall(
            b"POST /v1/platforms/video/events HTTP/1.1\r\nHost: x\r\n"
            + f"Authorization: Bearer {server['token']}\r\n".encode()
            + b"Transfer-Encoding: chunked\r\n\r\n"
        )
        answer = b""
        try:
            for _ in range(1024):  # up to 64 MiB offered
                s.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                sent += len(chunk)
                s.settimeout(0.0)
                try:
                    answer = s.recv(65536)
                except BlockingIOError:
                    answer = b""
                s.settimeout(10)
                if answer:
                    break
        except (BrokenPipeError, ConnectionResetError):
            s.settimeout(10)
            answer = answer or s.recv(65536)
        if not answer:
            answer = s.recv(65536)
    assert b" 413 " in answer.split(b"\r\n", 1)[0]
    assert sent < 8 * 1024 * 1024  # answered long before the client finished


def test_a_second_writer_is_told_who_holds_the_workspace(server):
    pid = server["proc"].pid
    root = str(server["root"])
    for args in (
        ("serve", "--workspace", root, "--port", str(_free_port())),
        ("link", "--workspace", root),
        ("ingest", "--workspace", root, "--platform", "video", "--events", os.devnull),
    ):
        r = crossrec(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert f"is being written by pid {pid} (crossrec serve)" in r.stderr
        assert "Traceback" not in r.stderr


def test_stopping_the_server_releases_the_workspace(server):
    proc = server["proc"]
    proc.send_signal(signal.SIGTERM)
    # a graceful shutdown, after which uvicorn re-raises the signal it caught
    assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
    log = (server["root"].parent / "server.log").read_text()
    assert "Application shutdown complete" in log
    r = crossrec("token", "list", "--workspace", str(server["root"]), "--json")
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)) == 1
