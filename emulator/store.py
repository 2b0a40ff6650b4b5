"""Persistent resource store: one JSON file per resource, written atomically, all kept in memory too.

Every mutation happens on the event-loop thread (training threads hand their results back to the loop), so the
store needs no locks. With no data dir the store lives in memory and in a temporary artifact folder.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
from pathlib import Path
from urllib.parse import quote, unquote


class Store:
    def __init__(self, data_dir: str | os.PathLike | None = None):
        self._tmp = None
        if data_dir is None:
            self._tmp = tempfile.mkdtemp(prefix="gemini-emulator-")
            self.root = Path(self._tmp)
            self.persistent = False
        else:
            self.root = Path(data_dir).resolve()
            self.persistent = True
        self.resources_dir = self.root / "resources"
        self.artifacts_dir = self.root / "artifacts"
        self.resources_dir.mkdir(parents=True, exist_ok=True)
        self.artifacts_dir.mkdir(parents=True, exist_ok=True)
        self._data: dict[str, dict[str, dict]] = {}
        self._load()

    # --- persistence -------------------------------------------------------------------------------------------
    def _path(self, kind: str, key: str) -> Path:
        return self.resources_dir / kind / (quote(key, safe="") + ".json")

    def _load(self) -> None:
        for kind_dir in sorted(p for p in self.resources_dir.iterdir() if p.is_dir()):
            bucket = self._data.setdefault(kind_dir.name, {})
            for f in sorted(kind_dir.glob("*.json")):
                try:
                    bucket[unquote(f.name[:-5])] = json.loads(f.read_text())
                except (OSError, ValueError):  # a torn write from a kill: the tmp file never replaced it
                    continue

    def _write(self, kind: str, key: str, obj: dict) -> None:
        path = self._path(kind, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(obj, separators=(",", ":")))
        os.replace(tmp, path)

    # --- API -----------------------------------------------------------------------------------------------
    def put(self, kind: str, key: str, obj: dict) -> dict:
        self._data.setdefault(kind, {})[key] = obj
        self._write(kind, key, obj)
        return obj

    def get(self, kind: str, key: str) -> dict | None:
        return self._data.get(kind, {}).get(key)

    def delete(self, kind: str, key: str) -> dict | None:
        obj = self._data.get(kind, {}).pop(key, None)
        try:
            self._path(kind, key).unlink()
        except FileNotFoundError:
            pass
        return obj

    def values(self, kind: str) -> list[dict]:
        return list(self._data.get(kind, {}).values())

    def items(self, kind: str) -> list[tuple[str, dict]]:
        return list(self._data.get(kind, {}).items())

    def artifact_path(self, name: str) -> Path:
        return self.artifacts_dir / (quote(name, safe="") + ".npz")

    def wipe(self) -> None:
        self._data.clear()
        shutil.rmtree(self.resources_dir, ignore_errors=True)
        shutil.rmtree(self.artifacts_dir, ignore_errors=True)
        self.resources_dir.mkdir(parents=True, exist_ok=True)
        self.artifacts_dir.mkdir(parents=True, exist_ok=True)

    def close(self) -> None:
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)


def new_numeric_id() -> str:
    """Vertex-style resource id: a large decimal number."""
    return str(1_000_000_000_000_000_000 + secrets.randbelow(8_000_000_000_000_000_000))


def new_slug_id(n: int = 6) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(secrets.choice(alphabet) for _ in range(n))
