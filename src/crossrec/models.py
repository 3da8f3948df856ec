"""Model versions of a workspace: ``models/<version>/`` with ``metadata.json``.

A version is written under a temporary name and renamed into place when complete, then
marked current by atomically replacing ``models/CURRENT``; readers that open a version see
either the previous model or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from crossrec.errors import ModelError, NotFoundError

CURRENT = "CURRENT"
METADATA = "metadata.json"
_VERSION_RE = re.compile(r"^v(\d{4,})$")


class ModelRegistry:
    def __init__(self, root: Path) -> None:
        self.root = root

    def versions(self) -> list[str]:
        if not self.root.is_dir():
            return []
        found = [p.name for p in self.root.iterdir() if p.is_dir() and _VERSION_RE.match(p.name)]
        return sorted(found, key=lambda v: int(v[1:]))

    def next_version(self) -> str:
        existing = self.versions()
        n = int(existing[-1][1:]) + 1 if existing else 1
        return f"v{n:04d}"

    def staging_dir(self, version: str) -> Path:
        path = self.root / f".tmp-{version}"
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        return path

    def publish(self, version: str, staging: Path, metadata: dict[str, Any]) -> Path:
        """Write metadata, move the staged version into place and mark it current."""
        (staging / METADATA).write_text(json.dumps(metadata, indent=2, default=str) + "\n")
        final = self.root / version
        os.replace(staging, final)
        tmp = self.root / f".{CURRENT}.tmp"
        tmp.write_text(version + "\n")
        os.replace(tmp, self.root / CURRENT)
        return final

    def current(self) -> str | None:
        path = self.root / CURRENT
        if not path.is_file():
            return None
        version = path.read_text().strip()
        return version if (self.root / version).is_dir() else None

    def path(self, version: str | None = None) -> Path:
        version = version or self.current()
        if version is None:
            raise ModelError("no trained model in this workspace", hint="run `crossrec train`")
        path = self.root / version
        if not path.is_dir():
            raise NotFoundError(
                f"model version {version} not found", hint="see `crossrec models list`"
            )
        return path

    def metadata(self, version: str) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads((self.root / version / METADATA).read_text())
        except (FileNotFoundError, json.JSONDecodeError) as exc:
            raise ModelError(f"model version {version} has no readable metadata: {exc}") from None
        return data

    def list(self) -> list[dict[str, Any]]:
        current = self.current()
        rows = []
        for v in self.versions():
            meta = self.metadata(v)
            meta["current"] = v == current
            rows.append(meta)
        return rows
