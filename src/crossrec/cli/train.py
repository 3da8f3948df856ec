"""``crossrec train`` and ``crossrec models list``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from crossrec.cli.common import JsonOpt, WorkspaceOpt, err, new_app, open_workspace, out, print_json


def register(app: typer.Typer) -> None:
    @app.command()
    def train(
        workspace: WorkspaceOpt = Path("."),
        json_out: JsonOpt = False,
        no_wait: Annotated[
            bool,
            typer.Option(
                "--no-wait",
                help="With a server running: ask it to train and return at once.",
            ),
        ] = False,
    ) -> None:
        """Train the text encoder cache, CF, sequence encoder, profiles and indexes.

        While `crossrec serve` runs on the workspace (it holds the store), the server trains
        in its own process: this command asks it to and waits until the new version is
        current (and served)."""
        from crossrec.cli.progress import rich_progress
        from crossrec.errors import WorkspaceError
        from crossrec.serve.control import serving_pid
        from crossrec.store.lock import WriterLock
        from crossrec.train import train as run_train

        ws = open_workspace(workspace)
        lock = WriterLock(ws.root, command="crossrec train")
        try:
            lock.acquire()
        except WorkspaceError:
            pid = serving_pid(ws.root)
            if pid is None:
                raise  # another writer (ingest, consume, link): wait for it
            meta = _train_on_server(ws.root, pid, wait=not no_wait, json_out=json_out)
            if meta is None:
                return
        else:
            with lock, ws, rich_progress() as progress:
                meta = run_train(ws, progress=progress)
        err.print(f"model {meta['version']} trained in {meta['seconds']} s and marked current")
        if json_out:
            print_json(meta)

    models = new_app("Model versions of the workspace.")
    app.add_typer(models, name="models")

    @models.command("list")
    def models_list(workspace: WorkspaceOpt = Path("."), json_out: JsonOpt = False) -> None:
        """Show model versions with their data sizes and metrics."""
        from crossrec.models import ModelRegistry

        with open_workspace(workspace) as ws:
            rows = ModelRegistry(ws.models_dir).list()
        if json_out:
            print_json(rows)
            return
        table = Table(title="models")
        for col in (
            "version",
            "current",
            "created",
            "events",
            "accounts",
            "text",
            "sequence",
            "index recall@10",
            "seconds",
        ):
            table.add_column(col)
        for m in rows:
            metrics = m.get("metrics", {})
            seq = metrics.get("sequence", {})
            recalls = [
                v.get("recall_at_10", 1.0)
                for space in metrics.get("index", {}).values()
                for v in space.values()
            ]
            table.add_row(
                m["version"],
                "*" if m.get("current") else "",
                m.get("created_at", ""),
                f"{m['data']['events']:,}",
                ", ".join(f"{p} {n:,}" for p, n in m["data"]["accounts"].items()),
                f"{metrics.get('text', {}).get('items_with_text', 0):,} items",
                f"{len(seq.get('epochs', []))} epochs (best {seq.get('best_epoch', '?')})",
                f"{min(recalls):.3f}" if recalls else "",
                str(m.get("seconds", "")),
            )
        out.print(table)


def _train_on_server(root: Path, pid: int, *, wait: bool, json_out: bool) -> dict[str, Any] | None:
    """Ask the server ``pid`` to train; with ``wait``, draw its progress on stderr until it
    answers and return the new version's metadata (None without ``wait``)."""
    from crossrec.serve import control

    request_id = control.submit(root, "train")
    if not wait:
        err.print(f"asked the server (pid {pid}) to train; `crossrec models list` shows it")
        if json_out:
            print_json({"requested": request_id, "server_pid": pid})
        return None
    err.print(f"the server (pid {pid}) holds the workspace: it trains, this waits")
    with _ServerProgress(root) as mirror:
        result: dict[str, Any] = control.wait_answer(
            root,
            request_id,
            alive=lambda: control.server_holds_lock(root),
            on_wait=mirror.refresh,
        )
    return result


class _ServerProgress:
    """The server's training steps (``.control/training.json``) drawn as local progress."""

    def __init__(self, root: Path) -> None:
        from crossrec.cli.progress import rich_progress

        self.root = root
        self._cm = rich_progress()
        self._tasks: list[Any] = []
        self._done: set[Any] = set()
        self._started: float | None = None

    def __enter__(self) -> _ServerProgress:
        self._progress = self._cm.__enter__()
        self._waiting = self._progress.task("waiting for the server's training to start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._cm.__exit__(None, None, None)

    def refresh(self) -> None:
        from crossrec.serve.control import training_status

        status = training_status(self.root)
        if status is None:
            return
        if status.get("started_at") != self._started:  # a new training: new rows
            self._started = status.get("started_at")
            self._tasks = []
            self._waiting.done()
        for i, entry in enumerate(status.get("tasks", [])):
            if i == len(self._tasks):
                self._tasks.append(self._progress.task(entry["description"], entry["total"]))
            handle = self._tasks[i]
            if handle in self._done:
                continue
            handle.update(completed=entry["completed"], total=entry["total"])
            if entry.get("done"):
                handle.done()
                self._done.add(handle)
