"""Starting and stopping the emulator: in-process (tests, on port 0) or as its own process (``python -m emulator``)."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from dataclasses import dataclass

from aiohttp import web

from .app import Emulator, EmulatorConfig
from .evaluation import EvaluationService
from .gemini_api import GeminiApiService
from .vertex import VertexService

log = logging.getLogger("emulator")


def build(config: EmulatorConfig, data_dir: str | None) -> tuple[Emulator, web.Application]:
    emu = Emulator(config, data_dir=data_dir)
    VertexService(emu)
    GeminiApiService(emu)
    EvaluationService(emu)
    return emu, emu.build_app()


@dataclass
class Endpoints:
    url: str          # Vertex AI + Gemini API base URL
    gcs_url: str      # STORAGE_EMULATOR_HOST

    def env(self) -> dict[str, str]:
        """Environment variables that point the official clients (and this project's plugin) at the emulator."""
        return {
            "GEMINI_TUNING_EMULATOR_URL": self.url,
            "GOOGLE_VERTEX_BASE_URL": self.url,
            "GOOGLE_GEMINI_BASE_URL": self.url,
            "STORAGE_EMULATOR_HOST": self.gcs_url,
            "NO_GCE_CHECK": "true",
        }


class EmulatorServer:
    """Runs the emulator (and its GCS emulator) on a background thread of the current process."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, gcs_port: int = 0, data_dir: str | None = None,
                 config: EmulatorConfig | None = None, default_bucket: str | None = "gemini-tuning-demo",
                 faults: list[dict] | None = None, gcs: bool = True, gcs_url: str | None = None):
        self.host, self.port, self.gcs_port = host, port, gcs_port
        self.data_dir = data_dir
        self.config = config or EmulatorConfig()
        self.default_bucket = default_bucket
        self.initial_faults = faults or []
        self.with_gcs = gcs
        self._external_gcs = gcs_url
        self.gcs = None
        self.emulator: Emulator | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.endpoints: Endpoints | None = None

    def start(self) -> Endpoints:
        import os

        if self.with_gcs:
            from .gcs import start_gcs

            gcs_dir = os.path.join(self.data_dir, "gcs") if self.data_dir else None
            if gcs_dir:
                os.makedirs(gcs_dir, exist_ok=True)
            self.gcs = start_gcs(self.host, self.gcs_port, data_dir=gcs_dir, default_bucket=self.default_bucket)
            self.config.gcs_url = self.gcs.url
        elif self._external_gcs:
            self.config.gcs_url = self._external_gcs
        api_dir = os.path.join(self.data_dir, "api") if self.data_dir else None
        self.emulator, app = build(self.config, api_dir)
        for spec in self.initial_faults:
            if spec.get("kind") == "job_failure":
                self.emulator.faults.add_job_failure({k: v for k, v in spec.items() if k != "kind"})
            else:
                self.emulator.faults.add(spec)
        self._loop = asyncio.new_event_loop()
        started = threading.Event()
        errors: list[BaseException] = []

        async def _start():
            self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await self._runner.setup()
            site = web.TCPSite(self._runner, self.host, self.port)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]

        def _run():
            asyncio.set_event_loop(self._loop)
            try:
                self._loop.run_until_complete(_start())
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)
                started.set()
                return
            started.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=_run, name="gemini-emulator", daemon=True)
        self._thread.start()
        started.wait(30)
        if errors:
            raise errors[0]
        self.endpoints = Endpoints(url=f"http://{self.host}:{self.port}",
                                   gcs_url=self.config.gcs_url or "")
        return self.endpoints

    def stop(self) -> None:
        if self._loop is not None and self._runner is not None:
            fut = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)
            try:
                fut.result(30)
            finally:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(30)
                self._loop.close()
        if self.emulator is not None:
            self.emulator.store.close()
        if self.gcs is not None:
            self.gcs.stop()
        self._loop = self._runner = None

    def __enter__(self) -> EmulatorServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def load_faults(arg: str | None) -> list[dict]:
    """``--faults`` takes inline JSON (a rule or a list) or ``@path/to/file.json``."""
    if not arg:
        return []
    if arg.startswith("@"):
        with open(arg[1:]) as f:
            text = f.read()
    else:
        text = arg
    data = json.loads(text)
    return data if isinstance(data, list) else [data]
