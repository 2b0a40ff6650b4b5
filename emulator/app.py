"""The emulator's aiohttp application: routing, fault middleware, request log, admin API, background ticker.

Vertex AI (``/v1``, ``/v1beta1``, operations also under ``/ui``) and the Gemini API (``/v1beta``, ``/v1``) share one
port, as their paths do not collide. The GCS emulator runs beside it on a port of its own (see ``emulator.gcs``).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import re
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields

from aiohttp import web

from . import models, wire
from .errors import ApiError
from .faults import Faults
from .store import Store

log = logging.getLogger("emulator")

Handler = Callable[..., Awaitable[web.StreamResponse]]


@dataclass
class EmulatorConfig:
    """Knobs. Durations are *nominal* (what the real service might take) and are multiplied by ``time_scale``;
    a job never ends before its real training has finished, however small the scale."""

    time_scale: float = 0.01          # 1.0 = realistic (a 300-example job takes ~30 min); 0.01 = ~20 s
    pending_seconds: float = 120.0    # nominal queue + dataset processing before RUNNING
    step_seconds: float = 15.0        # nominal time per training step
    lro_seconds: float = 0.3          # long-running operations (model/endpoint deletes, undeploy) finish after this
                                      # (not scaled)
    batch_item_seconds: float = 0.5   # nominal batch-prediction time per request
    tick_seconds: float = 0.1
    max_training_examples: int = 50_000
    gcs_url: str | None = None        # the GCS emulator the jobs read training data from
    gemini_api_tuning_discontinued: bool = False   # answer tunedModels.create like Google does since 2025
    gemini_api_tuning_not_found: bool = False      # answer tunedModels.create like Google does today (404, §6)
    seed: int = 0
    # the emulator's date for the base-model lifecycle (emulator.models): "YYYY-MM-DD" or "now" (wall clock, UTC);
    # default $GEMINI_EMULATOR_TODAY, else models.DEFAULT_TODAY (before the 2.5 models' tuning block)
    today: str = field(default_factory=models.default_today)
    # nominal seconds (x time_scale) a new Vertex tuning job waits in TUNING_JOB_STATE_WAITING_FOR_QUOTA before its
    # dataset is processed, and in TUNING_JOB_STATE_WAITING_FOR_CAPACITY before tuning starts (fixed at create)
    quota_wait_seconds: float = 0.0
    capacity_wait_seconds: float = 0.0
    # the service's per-example token limit for new Vertex jobs, overriding the catalogue's (None): a stand-in for
    # Google's tokenizer counting more tokens than the plugin's chars / 4 estimate, so that the service drops
    # examples the prepare step let through
    max_example_tokens: int | None = None

    def update(self, values: dict) -> None:
        known = {f.name: f.type for f in fields(self)}
        for key, value in values.items():
            if key not in known:
                raise ValueError(f"unknown config key {key!r}")
            if key == "today" and value != "now":
                models.today(type(self)(today=value))   # ValueError for a malformed date
            if key == "max_example_tokens" and value is not None and (
                    isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"max_example_tokens must be an integer >= 1 or null, got {value!r}")
            if key in ("quota_wait_seconds", "capacity_wait_seconds") and (
                    isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
                raise ValueError(f"{key} must be a number >= 0, got {value!r}")
            setattr(self, key, value)


class Router:
    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern, Handler]] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        self._routes.append((method.upper(), re.compile("^" + pattern + "$"), handler))

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path  # percent-decoded by aiohttp ("models/1%401" -> "models/1@1")
        method_mismatch = False
        for method, rx, handler in self._routes:
            m = rx.match(path)
            if not m:
                continue
            if method != request.method:
                method_mismatch = True
                continue
            return await handler(request, **m.groupdict())
        if method_mismatch:
            raise ApiError(405, f"Method {request.method} not allowed on {path}", status="UNIMPLEMENTED")
        raise ApiError(404, f"The requested URL {path} was not found on this server.")


class Emulator:
    """Holds the state shared by the Vertex and Gemini API surfaces."""

    def __init__(self, config: EmulatorConfig, data_dir: str | None = None):
        self.config = config
        self.store = Store(data_dir)
        self.faults = Faults(seed=config.seed)
        self.router = Router()
        self.requests: collections.deque = collections.deque(maxlen=20_000)
        self.request_counts: collections.Counter = collections.Counter()
        self.executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="emulator-train")
        self.tickers: list[Callable[[float], None]] = []
        self.background: set[asyncio.Task] = set()
        self.startup_hooks: list[Callable[[], None]] = []

    def now(self) -> float:
        return time.time()

    def spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        return task

    def tick(self) -> None:
        now = self.now()
        for ticker in self.tickers:
            ticker(now)

    # --- aiohttp glue ------------------------------------------------------------------------------------
    @web.middleware
    async def middleware(self, request: web.Request, handler) -> web.StreamResponse:
        path = request.path
        if path.startswith("/_emulator/"):
            return await handler(request)
        delay, rule = self.faults.match(request.method, path)
        if delay:
            await asyncio.sleep(delay)
        status = 0
        try:
            query = wire.camel_query(request.query)   # handlers read camelCase query keys only (page_size too)
            if query is not None:
                request = request.clone(rel_url=request.rel_url.with_query(query))
            if rule is not None and rule.kind in ("reset_after", "stall_after"):
                resp = await self.router.dispatch(request)   # processed for real...
                status = -1
                if rule.kind == "stall_after":
                    await asyncio.sleep(rule.delay_s)
                    return resp
                if request.transport is not None:             # ...but the answer is lost
                    request.transport.abort()
                raise ConnectionResetError("fault injection: connection reset after processing")
            if rule is not None:
                if rule.kind == "reset":
                    status = -1
                    if request.transport is not None:
                        request.transport.abort()
                    raise ConnectionResetError("fault injection: connection reset")
                if rule.kind == "stall":
                    await asyncio.sleep(rule.delay_s)
                    raise ApiError(504, "Deadline exceeded (emulated stall).")
                headers = {"Retry-After": str(int(rule.retry_after) if float(rule.retry_after).is_integer()
                                               else rule.retry_after)} if rule.retry_after is not None else {}
                raise ApiError(rule.status, rule.message or _default_message(rule.status), headers=headers)
            try:
                resp = await self.router.dispatch(request)
            except ApiError:
                raise
            except (ValueError, TypeError, KeyError) as exc:  # a malformed body that slipped past validation
                raise ApiError(400, f"Invalid request: {exc}") from exc
            status = resp.status
            return resp
        except ApiError as exc:
            status = exc.code
            return exc.response()
        finally:
            self.requests.append((time.time(), request.method, path, status))
            self.request_counts[(request.method, _route_kind(path))] += 1

    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self.middleware], client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/_emulator/{tail:.*}", self._admin)
        app.router.add_route("*", "/{tail:.*}", self.router.dispatch)
        app.on_startup.append(self._on_startup)
        app.on_cleanup.append(self._on_cleanup)
        return app

    async def _on_startup(self, app) -> None:
        for hook in self.startup_hooks:
            hook()
        self.spawn(self._ticker())

    async def _on_cleanup(self, app) -> None:
        for task in list(self.background):
            task.cancel()
        await asyncio.gather(*self.background, return_exceptions=True)
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def _ticker(self) -> None:
        while True:
            try:
                self.tick()
            except Exception:
                log.exception("ticker failed")
            await asyncio.sleep(self.config.tick_seconds)

    # --- admin API ---------------------------------------------------------------------------------------
    async def _admin(self, request: web.Request) -> web.StreamResponse:
        what = request.match_info["tail"]
        body = await request.json() if request.can_read_body else {}
        if what == "health":
            return web.json_response({"ok": True})
        if what == "faults":
            if request.method == "POST":
                items = body if isinstance(body, list) else [body]
                try:
                    added = [self.faults.add(spec).to_dict() for spec in items]
                except (TypeError, ValueError) as exc:
                    return web.json_response({"error": str(exc)}, status=400)
                return web.json_response({"added": added})
            if request.method == "DELETE":
                self.faults.clear()
            return web.json_response(self.faults.to_dict())
        if what == "job-failures" and request.method == "POST":
            try:
                plan = self.faults.add_job_failure(body)
            except (TypeError, ValueError, re.error) as exc:
                return web.json_response({"error": str(exc)}, status=400)
            return web.json_response(plan.to_dict())
        if what == "config":
            if request.method in ("PATCH", "POST"):
                try:
                    self.config.update(body)
                except ValueError as exc:
                    return web.json_response({"error": str(exc)}, status=400)
            return web.json_response(asdict(self.config))
        if what == "models":
            day = models.today(self.config)
            return web.json_response({"today": day.isoformat(),
                                      "models": [m.to_dict(day) for m in models.CATALOGUE]})
        if what == "requests":
            if request.method == "DELETE":
                self.requests.clear()
                self.request_counts.clear()
                return web.json_response({})
            rx = re.compile(request.query.get("path", ".*"))
            method = request.query.get("method")
            rows = [{"t": t, "method": m, "path": p, "status": s} for t, m, p, s in self.requests
                    if rx.search(p) and (method is None or m == method)]
            return web.json_response({"requests": rows, "count": len(rows)})
        if what == "resources":
            kind = request.query.get("kind")
            kinds = [kind] if kind else sorted(self.store._data)
            return web.json_response({k: self.store.values(k) for k in kinds})
        if what == "reset" and request.method == "POST":
            self.store.wipe()
            self.faults.clear()
            self.requests.clear()
            self.request_counts.clear()
            return web.json_response({})
        return web.json_response({"error": f"unknown admin path {what}"}, status=404)


_DEFAULT_MESSAGES = {429: "Resource exhausted, please try again later.",
                     500: "Internal error encountered.", 503: "The service is currently unavailable."}


def _default_message(status: int) -> str:
    return _DEFAULT_MESSAGES.get(status, f"Emulated HTTP {status}.")


_KIND_RX = re.compile(r"(tuningJobs|tunedModels|operations|batchPredictionJobs|endpoints|models|generateContent|"
                      r"evaluateInstances)")


def _route_kind(path: str) -> str:
    kinds = _KIND_RX.findall(path)
    return kinds[-1] if kinds else path
