"""Real Airflow 3.3 services, for the integration tests and the local cluster (:mod:`harness.cluster`).

``AirflowServices`` starts, by default, the four components of a LocalExecutor deployment on SQLite --
``api-server``, ``scheduler`` (parallelism 4), ``dag-processor`` and ``triggerer`` -- each as its own ``airflow``
CLI process in its own session and process group, with a private temporary ``AIRFLOW_HOME``, free ports and an
explicit environment (nothing is inherited from ``tests/conftest.py``'s in-process Airflow settings). Pass
``components`` (and the settings in ``extra_env``) for another shape, e.g. two triggerers and Celery workers.

    with AirflowServices(dags_folder=ROOT / "dags", plugins_folder=ROOT / "plugins") as af:
        af.wait_dag_parsed("my_dag")
        run_id = af.trigger_dag("my_dag", conf={"x": 1})
        assert af.wait_run("my_dag", run_id) == "success"

What the processes look like (Airflow 3.3.2, Linux; ``af.ps()`` prints ``pid pgid sid title``)::

    10491 10491 10491  airflow api_server -- host:127.0.0.1 port:43701            api-server (uvicorn, setproctitle)
    10492 10492 10492  /…/.venv/bin/python /…/.venv/bin/airflow scheduler
    10596 10492 10492  airflow serve-logs                                           worker log server
    10597 10492 10492  airflow worker -- LocalExecutor: <idle>                      x parallelism (4), forked at start
    10493 10493 10493  /…/.venv/bin/python /…/.venv/bin/airflow dag-processor      (+ short-lived parse children)
    10494 10494 10494  /…/.venv/bin/python /…/.venv/bin/airflow triggerer
    10595 10494 10494  airflow serve-logs                                           trigger log server
    10609 10494 10494  /…/.venv/bin/python /…/.venv/bin/airflow triggerer          TriggerRunner subprocess (forked)

  and while a task instance runs::

    10597 10492 10492  airflow worker -- LocalExecutor: 01a20822-e7b0-7d87-b807-c77b61d42558   supervisor
    10628 10628 10492  airflow worker -- 01a20822-e7b0-7d87-b807-c77b61d42558                  task runner

The supervisor is the LocalExecutor worker itself (it sets its title to the TI id while it supervises the try);
the task runner is forked from it, runs the operator code, and is put in its OWN process group (pgid = its pid,
``setpgid``) but stays in the scheduler's session. Neither title carries the dag_id or task_id: the only handle is
the task instance's UUID (``id`` in the REST task-instance response; a new UUID per try, the same across a
defer/resume). ``worker_processes_for`` therefore asks the REST API for the task's TI ids and matches them
against ``/proc/<pid>/cmdline``. While a task is *deferred* no process carries its id: the task runner has exited
and its worker is back to ``<idle>`` -- after a short linger, see ``AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL``.

Killing only the task runner (SIGKILL its group): the supervisor reports ``exit_code=-9`` and the TI fails (or is
retried) within ~1 s. Killing the supervisor too: nothing reports, the TI stays ``running`` until the scheduler's
``task_instance_heartbeat_timeout`` (30 s here, 300 s by default) -- observed failed after ~38 s. (The dead
LocalExecutor worker was not replaced: 3 idle workers were left; later tasks still ran.)

Processes are tracked by **session id** (``start_new_session=True`` makes each component a session leader):
Airflow's task runners call ``setpgid`` (their own process group, so killing the scheduler's group does *not*
reach them) but never ``setsid``, so the session still contains every descendant even after re-parenting. Stop
= SIGTERM to the component's process group, grace period, then SIGKILL to every process left in its session
(idle LocalExecutor workers may ignore SIGTERM).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self
from urllib.parse import quote

import httpx
import psutil

from harness.paths import ROOT, TESTS

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
# Key of each component in GET /api/v2/monitor/health (the api-server is healthy when it answers). Components named
# "triggerer-N" report under "triggerer" (the health endpoint shows the newest heartbeat of all triggerers).
_HEALTH_KEY = {"scheduler": "scheduler", "dag-processor": "dag_processor", "triggerer": "triggerer"}


@dataclass(frozen=True)
class Component:
    """One process of the deployment: its ``airflow`` sub-command and the environment it adds."""

    name: str
    args: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    ready_log: str | None = None       # a line its log shows once it is ready (components without health)

    @property
    def health_key(self) -> str | None:
        return _HEALTH_KEY.get(self.name.split("-", 1)[0] if self.name.startswith("triggerer") else self.name)
TERMINAL_RUN_STATES = frozenset({"success", "failed"})
POLL = 0.5
#: ``[core] auth_manager`` for per-DAG roles (``access_control``; needs apache-airflow-providers-fab): pass
#: ``extra_env=fab_auth_env()`` and call ``AirflowServices.setup_fab_auth`` before ``start``
FAB_AUTH_MANAGER = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
_UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class ServicesError(RuntimeError):
    """A component did not start, died, or a wait timed out (the message carries the evidence)."""


@dataclass(frozen=True)
class TaskProcess:
    """A process working on a task instance. ``role`` is ``"supervisor"`` (the LocalExecutor worker that
    supervises the try) or ``"task"`` (the forked task runner where operator code runs)."""

    pid: int
    pgid: int
    sid: int
    role: str
    ti_id: str
    title: str


def fab_auth_env() -> dict[str, str]:
    """``extra_env`` for services that run the FAB auth manager instead of the SimpleAuthManager (the default)."""
    return {"AIRFLOW__CORE__AUTH_MANAGER": FAB_AUTH_MANAGER}


_FAB_SETUP = """
import json, sys
from airflow.providers.fab.auth_manager.cli_commands.utils import get_application_builder

spec = json.loads(sys.argv[1])
with get_application_builder() as appbuilder:
    sm = appbuilder.sm
    appbuilder.add_permissions(update_perms=True)          # airflow sync-perm
    sm.sync_roles()
    for name, perms in spec["roles"].items():              # airflow roles create / add-perms
        role = sm.find_role(name) or sm.add_role(name)
        for action, resource in perms:
            sm.add_permission_to_role(role, sm.create_permission(action, resource))
    for username, password, role in spec["users"]:         # airflow users create
        if not sm.find_user(username=username):
            if not sm.add_user(username, username, role, f"{username}@example.invalid", sm.find_role(role),
                               password):
                raise SystemExit(f"could not create user {username}")
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _airflow_cmd() -> list[str]:
    script = Path(sys.executable).with_name("airflow")
    return [sys.executable, str(script)] if script.exists() else [sys.executable, "-m", "airflow"]


def _alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def session_pids(sid: int) -> list[int]:
    """Live (non-zombie) processes in session ``sid``."""
    out = []
    for pid in psutil.pids():
        try:
            if os.getsid(pid) == sid and _alive(pid):
                out.append(pid)
        except OSError:
            continue
    return sorted(out)


def group_pids(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group ``pgid``."""
    out = []
    for pid in psutil.pids():
        try:
            if os.getpgid(pid) == pgid and _alive(pid):
                out.append(pid)
        except OSError:
            continue
    return sorted(out)


def _cmdline(pid: int) -> str:
    try:
        return " ".join(psutil.Process(pid).cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return ""


def _parse_ts(value: str | None) -> float | None:
    if not value:
        return None
    return datetime.fromisoformat(value).timestamp()


class AirflowServices:
    """api-server + scheduler + dag-processor + triggerer on SQLite with LocalExecutor, as a context manager."""

    def __init__(
        self,
        *,
        dags_folder: str | os.PathLike,
        plugins_folder: str | os.PathLike | None = None,
        extra_env: dict[str, str] | None = None,
        home: Path | None = None,
        startup_timeout: float = 150.0,
        stop_timeout: float = 20.0,
        components: Iterable[Component] | None = None,
        extra_pythonpath: Iterable[str | os.PathLike] = (),
    ):
        self.home = Path(home) if home is not None else Path(tempfile.mkdtemp(prefix="af-services-"))
        self.home.mkdir(parents=True, exist_ok=True)
        self.dags_folder = Path(dags_folder).resolve()
        self.plugins_folder = Path(plugins_folder).resolve() if plugins_folder else self.home / "plugins"
        self.plugins_folder.mkdir(parents=True, exist_ok=True)
        self.log_dir = self.home / "services"
        self.log_dir.mkdir(exist_ok=True)
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout

        self.api_port = free_port()
        self.worker_log_port = free_port()
        self.trigger_log_port = free_port()
        self.base_url = f"http://127.0.0.1:{self.api_port}"
        self.username, self.password = "admin", "admin"
        # Pre-seeded so the SimpleAuthManager password is known (otherwise it is random, gotcha 15).
        (self.home / "simple_auth_manager_passwords.json.generated").write_text(
            json.dumps({self.username: self.password})
        )

        self.extra_pythonpath = [str(p) for p in extra_pythonpath]
        self.env = self._build_env(extra_env or {})
        self.procs: dict[str, subprocess.Popen] = {}
        self.started_at: dict[str, float] = {}
        self.components: dict[str, Component] = {
            c.name: c for c in (components or [Component(n, (n,)) for n in COMPONENTS])}
        self._sids: dict[str, set[int]] = {name: set() for name in self.components}  # every session a component had
        self._logs: dict[str, Any] = {}
        self._token: str | None = None
        self._http = httpx.Client(base_url=self.base_url, timeout=60.0)
        self.timings: dict[str, float] = {}

    # ------------------------------------------------------------------ environment

    def _build_env(self, extra_env: dict[str, str]) -> dict[str, str]:
        # Start from the parent's environment minus anything Airflow/pytest-specific that conftest.py set
        # for in-process tests (AIRFLOW_HOME, UNIT_TEST_MODE, its SQLite conn, PYTEST_* changes logging).
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AIRFLOW", "_AIRFLOW", "PYTEST_"))
        }
        # The project root (``emulator``) and ``tests/`` (the ``harness`` package: e.g. the cluster's
        # ``hostname_callable``), as under pytest. NB ``tests.*`` itself is NOT importable: looker_sdk installs
        # a regular ``tests`` package in site-packages that shadows our namespace dir.
        pythonpath = [str(ROOT), str(TESTS), *self.extra_pythonpath]
        pythonpath += [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        secret = uuid.uuid4().hex + uuid.uuid4().hex
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(self.plugins_folder),
                # SQLite's lock wait is 5 s by default; four components and the LocalExecutor's tasks write
                # the one file, and under CI load a writer waited longer (the api-server answered 500 "Database
                # error" to POST dagRuns). 30 s, for the sync and the aiosqlite (api-server) engines alike.
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home}/airflow.db?timeout=30",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__CORE__PARALLELISM": "4",
                # Plugins load at start in every component, and this package's plugin then imports what its
                # tasks import (README "Task start-up cost"): the LocalExecutor's and Celery's forked task
                # processes inherit it. Half the CPU of a pipeline run on these stacks.
                "AIRFLOW__CORE__LAZY_LOAD_PLUGINS": "False",
                "AIRFLOW__GEMINI_TUNING__PRELOAD_TASK_MODULES": "True",
                # the open pipeline DAG (every value a Param) for the tests; no reviewed pipeline files unless a
                # test points this at a folder (their cron schedules would start runs on an unpaused stack)
                "AIRFLOW__GEMINI_TUNING__OPEN_PIPELINE_DAG": "True",
                "AIRFLOW__GEMINI_TUNING__PIPELINES_FOLDER": str(self.home / "no-pipelines"),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{self.username}:admin",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.api_port),
                "AIRFLOW__API__BASE_URL": self.base_url,
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API__SECRET_KEY": secret[:32],
                "AIRFLOW__API_AUTH__JWT_SECRET": secret,  # the same for every component
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self.worker_log_port),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(self.trigger_log_port),
                # New files are picked up within 5 s; unchanged files are re-parsed only every 30 s (CPU).
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "30",
                "AIRFLOW__SCHEDULER__TRIGGER_TIMEOUT_CHECK_INTERVAL": "2",
                # A SIGKILLed triggerer's triggers are re-assigned once its heartbeat is older than this.
                "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
                "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "10",
                # A killed worker's task is failed (or retried) after this many seconds without heartbeat.
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
                # The task supervisor often sees its task runner's sockets close before the process is
                # reapable and then sleeps in select() for this long before noticing the exit (observed: 5 s
                # of "airflow worker -- LocalExecutor: <ti id>" after the task deferred or finished). That
                # late "success" report is the window of the defer race (reference gotcha 4). 1 s shrinks it.
                "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
                # inputs the test stacks write (tmp_path) besides the repository's include/ (the default root)
                "AIRFLOW__GEMINI_TUNING__INPUT_ROOTS": os.pathsep.join([str(ROOT / "include"), tempfile.gettempdir()]),
                "PYTHONPATH": os.pathsep.join(pythonpath),
                "NO_GCE_CHECK": "true",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update({k: str(v) for k, v in extra_env.items()})
        return env

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def airflow(self, *args: str, timeout: float = 180.0, check: bool = True) -> subprocess.CompletedProcess:
        """Run an ``airflow`` CLI command with the services' environment (e.g. ``airflow("dags", "list")``)."""
        res = subprocess.run(
            [*_airflow_cmd(), *args], env=self.env, cwd=self.home, capture_output=True, text=True,
            timeout=timeout, start_new_session=True, check=False,
        )
        if check and res.returncode != 0:
            raise ServicesError(f"airflow {' '.join(args)} exited {res.returncode}:\n"
                                f"{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
        return res

    def setup_fab_auth(self, *, roles: dict[str, Iterable[tuple[str, str]]] | None = None,
                       users: Iterable[tuple[str, str, str]] = (), timeout: float = 400.0) -> None:
        """With the FAB auth manager (``extra_env=fab_auth_env()``), before ``start``: ``airflow db migrate`` (it
        creates FAB's tables too), then what ``airflow sync-perm``, ``airflow roles create``, ``airflow roles
        add-perms`` and ``airflow users create`` do, in ONE process (each of those CLI commands builds the Flask
        app: 30-60 s apiece on this machine): FAB's default roles and resources, ``roles`` (name → role-level
        ``(action, resource)`` pairs), ``users`` (``(username, password, role)``) and the harness's own Admin user
        (``self.username``, so ``token()`` and the REST helpers work as with the SimpleAuthManager). Roles that a
        DAG's ``access_control`` names must exist before the dag-processor parses it."""
        self.airflow("db", "migrate", timeout=timeout)
        spec = {"roles": {r: sorted(map(list, perms)) for r, perms in (roles or {}).items()},
                "users": [[self.username, self.password, "Admin"], *map(list, users)]}
        res = subprocess.run([sys.executable, "-c", _FAB_SETUP, json.dumps(spec)], env=self.env, cwd=self.home,
                             capture_output=True, text=True, timeout=timeout, start_new_session=True,
                             stdin=subprocess.DEVNULL, check=False)
        if res.returncode != 0:
            raise ServicesError(f"FAB setup exited {res.returncode}:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")

    def start(self, *, register_atexit: bool = True) -> None:
        """``airflow db migrate``, then every component, then wait until they are all healthy.

        ``register_atexit``: stop everything when this Python process exits (tests); False leaves the services
        running for a later ``stop`` by process group (the cluster CLI)."""
        t0 = time.monotonic()
        if register_atexit:
            atexit.register(self.stop)  # the pytest process exiting without teardown must not leak services
        try:
            self.airflow("db", "migrate")
            self.timings["db_migrate"] = time.monotonic() - t0
            for name in self.components:
                self.start_component(name, wait=False)
            self.wait_healthy(timeout=self.startup_timeout)
        except BaseException:
            with contextlib.suppress(Exception):
                self.stop()
            raise
        self.timings["start"] = time.monotonic() - t0

    def start_component(self, name: str, *, wait: bool = True, timeout: float | None = None) -> None:
        """Start one component in its own session/process group; with ``wait``, until it is healthy."""
        if name not in self.components:
            raise ValueError(f"unknown component {name!r}; one of {tuple(self.components)}")
        component = self.components[name]
        if name in self.procs and self.procs[name].poll() is None:
            raise ServicesError(f"{name} is already running (pid {self.procs[name].pid})")
        if name in self._logs:
            self._logs.pop(name).close()
        log = open(self.log_path(name), "ab")  # noqa: SIM115 -- closed when the component is stopped
        log.write(f"\n===== harness: starting {name} at {datetime.now(UTC).isoformat()} =====\n".encode())
        log.flush()
        self._logs[name] = log
        self.started_at[name] = time.time()
        proc = subprocess.Popen(
            [*_airflow_cmd(), *component.args], env={**self.env, **dict(component.env)}, cwd=self.home,
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.procs[name] = proc
        self._sids[name].add(proc.pid)
        if wait:
            self.wait_healthy([name], timeout=timeout or self.startup_timeout)

    def stop_component(self, name: str, *, timeout: float | None = None) -> None:
        """SIGTERM the component's process group, wait, then SIGKILL everything left in its session(s)."""
        timeout = self.stop_timeout if timeout is None else timeout
        proc = self.procs.get(name)
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout)
        self._kill_sessions(name, signal.SIGKILL)

    def kill_component(self, name: str, sig: int = signal.SIGKILL, *, wait: bool = True) -> None:
        """Send ``sig`` to every process of the component (all process groups of its session, so for the
        scheduler its LocalExecutor workers and task runners too) -- a crash.

        With SIGKILL and ``wait``, returns once none of its processes is left."""
        self._kill_sessions(name, sig, wait=wait and sig == signal.SIGKILL)
        if wait and sig != signal.SIGKILL and name in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.procs[name].wait(self.stop_timeout)

    def restart_component(self, name: str, *, kill: bool = False) -> None:
        (self.kill_component if kill else self.stop_component)(name)
        self.start_component(name)

    def _kill_sessions(self, name: str, sig: int, *, wait: bool = True) -> None:
        pgids = set()
        for pid in self._session_members(name):
            with contextlib.suppress(OSError):
                pgids.add(os.getpgid(pid))
        for pgid in pgids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, sig)
        proc = self.procs.get(name)
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5 if wait else 0.01)
        if not wait:
            return
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            left = self._session_members(name)
            if not left:
                break
            for pid in left:  # stragglers that changed process group after the first pass
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
            time.sleep(0.2)
        else:
            raise ServicesError(f"{name}: processes survived {signal.Signals(sig).name}: {self._describe(left)}")
        if name in self._logs:
            self._logs.pop(name).close()

    def stop(self) -> None:
        """Stop every component and leave no process behind.

        SIGTERM to scheduler, triggerer and dag-processor first, while the api-server still answers (running
        task runners get the SIGTERM forwarded and must report their end state through the execution API;
        with the api-server gone they retry and hang), then the api-server; after ``stop_timeout`` SIGKILL
        to everything left in each component's session.

        Running task runners are stopped first (SIGTERM, 3 s, SIGKILL to their process groups): in 3.3 a task
        runner's SIGTERM handler only calls ``on_kill()`` and lets ``execute()`` carry on, so a scheduler with a
        running task would otherwise wait the whole ``stop_timeout`` for it."""
        t0 = time.monotonic()
        self._stop_task_runners()
        first = tuple(n for n in self.components if n != "api-server")
        for names, grace in ((first, self.stop_timeout), (("api-server",), 5)):
            deadline = time.monotonic() + grace
            for name in names:
                proc = self.procs.get(name)
                if proc is not None and proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(proc.pid, signal.SIGTERM)
            for name in names:
                if name in self.procs:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        self.procs[name].wait(max(0.01, deadline - time.monotonic()))
        self.timings["stop_graceful"] = time.monotonic() - t0
        errors = []
        for name in self.components:
            try:
                self._kill_sessions(name, signal.SIGKILL)
            except ServicesError as e:
                errors.append(str(e))
        self._http.close()
        self._http = httpx.Client(base_url=self.base_url, timeout=60.0)
        self._token = None
        atexit.unregister(self.stop)
        self.timings["stop"] = time.monotonic() - t0
        if errors:
            raise ServicesError("; ".join(errors))

    def _session_members(self, name: str) -> list[int]:
        """Live processes of the component's sessions. A session seen empty is forgotten: once its last
        member is gone the kernel may hand the same number to someone else's new session."""
        out = []
        for sid in list(self._sids.get(name, ())):
            pids = session_pids(sid)
            if not pids and (name not in self.procs or self.procs[name].pid != sid
                             or self.procs[name].poll() is not None):
                self._sids[name].discard(sid)
            out += pids
        return sorted(set(out))

    def component_pids(self, name: str) -> list[int]:
        """Every live process of one component (all its process groups, incl. task runners for the scheduler)."""
        return self._session_members(name)

    def executor_components(self) -> list[str]:
        """Where task runners live: the scheduler (LocalExecutor) or the Celery workers."""
        return [n for n in self.components if n == "scheduler" or n.startswith("worker")]

    def task_runner_pids(self) -> list[int]:
        """Running task runners: the executor-session processes that lead their own process group."""
        out = []
        for name in self.executor_components():
            root = self.procs[name].pid if name in self.procs else None
            for pid in self.component_pids(name):
                with contextlib.suppress(OSError):
                    if pid != root and os.getpgid(pid) == pid:
                        out.append(pid)
        return out

    def _stop_task_runners(self, grace: float = 3.0) -> None:
        runners = self.task_runner_pids()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pgid in runners:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pgid, sig)
            deadline = time.monotonic() + grace
            while runners and time.monotonic() < deadline:
                runners = [pid for pid in runners if _alive(pid)]
                time.sleep(0.2)
            if not runners:
                return

    def leftover_pids(self) -> list[int]:
        """Every live process in any session this harness started (empty after ``stop()``)."""
        return sorted({pid for name in self.components for pid in self._session_members(name)})

    def ps(self) -> str:
        """``ps``-like listing (pid pgid sid title) of all harness processes -- for debugging."""
        return self._describe(self.leftover_pids())

    @staticmethod
    def _describe(pids: Iterable[int]) -> str:
        lines = []
        for pid in pids:
            with contextlib.suppress(OSError):
                lines.append(f"{pid:>7} {os.getpgid(pid):>7} {os.getsid(pid):>7}  {_cmdline(pid)}")
        return "\n".join(lines)

    # ------------------------------------------------------------------ logs & health

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def _log_since_start(self, name: str) -> str:
        """The component's log since its latest start (the harness writes a marker line at each start)."""
        try:
            text = self.log_path(name).read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return text.rsplit("===== harness: starting", 1)[-1]

    def log_tail(self, name: str, lines: int = 40) -> str:
        try:
            text = self.log_path(name).read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def diagnostics(self, lines: int = 40) -> str:
        parts = [f"AIRFLOW_HOME={self.home}"]
        for name in self.components:
            proc = self.procs.get(name)
            rc = None if proc is None else proc.poll()
            parts.append(f"----- {name} (pid {proc.pid if proc else '-'}, exit {rc}) {self.log_path(name)}\n"
                         f"{self.log_tail(name, lines)}")
        return "\n".join(parts)

    def health(self) -> dict | None:
        try:
            r = self._http.get("/api/v2/monitor/health", timeout=10)
            return r.json() if r.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None

    def wait_healthy(self, components: Iterable[str] | None = None, timeout: float = 120.0) -> dict:
        """Wait until each component reports healthy *with a heartbeat newer than its own start* (or, for a
        component without a health entry, until its log shows its ``ready_log`` line)."""
        components = list(self.components if components is None else components)
        t0 = time.monotonic()
        deadline = t0 + timeout
        last = None
        while time.monotonic() < deadline:
            for name in components:
                proc = self.procs.get(name)
                if proc is None or proc.poll() is not None:
                    raise ServicesError(
                        f"{name} is not running (exit code {None if proc is None else proc.returncode})\n"
                        + self.diagnostics()
                    )
            last = self.health()
            if last is not None and last.get("metadatabase", {}).get("status") == "healthy":
                ok = True
                for name in components:
                    key = self.components[name].health_key
                    ready = self.components[name].ready_log
                    if ready and ready not in self._log_since_start(name):
                        ok = False
                    if key is None:
                        continue
                    info = last.get(key) or {}
                    hb = _parse_ts(info.get(f"latest_{key}_heartbeat"))
                    if info.get("status") != "healthy" or hb is None or hb < self.started_at[name] - 1:
                        ok = False
                if ok:
                    self.timings[f"healthy:{','.join(components)}"] = time.monotonic() - t0
                    return last
            time.sleep(POLL)
        raise ServicesError(f"not healthy after {timeout:.0f}s: {components}; last health: {last}\n"
                            + self.diagnostics())

    # ------------------------------------------------------------------ REST client

    def token(self, *, refresh: bool = False) -> str:
        if self._token is None or refresh:
            r = self._http.post("/auth/token", json={"username": self.username, "password": self.password})
            if r.status_code not in (200, 201):
                raise ServicesError(f"POST /auth/token -> {r.status_code} {r.text[:500]}")
            self._token = r.json()["access_token"]
        return self._token

    def request(self, method: str, path: str, *, expect: Iterable[int] | None = (200,), retries: int = 3,
                **kwargs) -> httpx.Response:
        """An authenticated call to the api-server. ``path`` is relative to the base URL (e.g. ``/api/v2/dags``).

        GETs are retried on transport errors and 5xx (e.g. SQLite busy); the token is refreshed once on 401.
        With ``expect=None`` the response is returned whatever its status; otherwise an unexpected status
        raises ``ServicesError``."""
        attempt = 0
        refreshed = False
        extra_headers = kwargs.pop("headers", {})
        while True:
            headers = {"Authorization": f"Bearer {self.token()}", **extra_headers}
            try:
                r = self._http.request(method, path, headers=headers, **kwargs)
            except httpx.TransportError:
                attempt += 1
                if method != "GET" or attempt > retries:
                    raise
                time.sleep(1)
                continue
            if r.status_code == 401 and not refreshed:
                refreshed = True
                self.token(refresh=True)
                continue
            if r.status_code >= 500 and method == "GET" and attempt < retries:
                attempt += 1
                time.sleep(1)
                continue
            if expect is not None and r.status_code not in set(expect):
                tail = f"\napi-server log:\n{self.log_tail('api-server', 30)}" if r.status_code >= 500 else ""
                raise ServicesError(f"{method} {path} -> {r.status_code}: {r.text[:2000]}{tail}")
            return r

    def get(self, path: str, **kw) -> Any:
        return self.request("GET", path, **kw).json()

    def post(self, path: str, json: Any = None, **kw) -> Any:
        kw.setdefault("expect", (200, 201))
        return self.request("POST", path, json=json, **kw).json()

    def patch(self, path: str, json: Any = None, **kw) -> Any:
        return self.request("PATCH", path, json=json, **kw).json()

    # ------------------------------------------------------------------ DAG / run / TI helpers

    @staticmethod
    def _run_path(dag_id: str, run_id: str) -> str:
        return f"/api/v2/dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}"

    def wait_dag_parsed(self, dag_id: str, timeout: float = 120.0) -> dict:
        """Wait until the dag-processor has serialized ``dag_id`` (fails fast on an import error)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = self.request("GET", f"/api/v2/dags/{quote(dag_id, safe='')}/details", expect=None)
            if r.status_code == 200:
                return r.json()
            errors = self.get("/api/v2/importErrors").get("import_errors", [])
            if errors:
                raise ServicesError(f"import errors while waiting for {dag_id}: {json.dumps(errors, indent=1)[:4000]}")
            time.sleep(POLL)
        raise ServicesError(f"DAG {dag_id} not parsed after {timeout:.0f}s\n{self.log_tail('dag-processor', 60)}")

    def trigger_dag(self, dag_id: str, conf: dict | None = None, *, run_id: str | None = None,
                    attempts: int = 4) -> str:
        """POST a manual run (``logical_date: null``, gotcha 7) and return its run_id.

        The run_id is chosen here (Airflow's own form, ``manual__<now>``, when none is given), so the POST can be
        repeated: under load on 2 cores the api-server's answer can outlast the client's timeout, or come back 500
        "Database error" while SQLite is locked; a repeat that answers 409 means the first one went through."""
        from datetime import datetime, timezone

        run_id = run_id or f"manual__{datetime.now(timezone.utc).isoformat()}"
        body: dict[str, Any] = {"logical_date": None, "conf": conf or {}, "dag_run_id": run_id}
        path = f"/api/v2/dags/{quote(dag_id, safe='')}/dagRuns"
        for attempt in range(1, attempts + 1):
            try:
                r = self.request("POST", path, json=body, expect=None)
            except httpx.TransportError:
                if attempt == attempts:
                    raise
                time.sleep(2)
                continue
            if r.status_code in (200, 201):
                return r.json()["dag_run_id"]
            if r.status_code == 409 and attempt > 1:        # our earlier POST created it
                return run_id
            if r.status_code >= 500 and attempt < attempts:
                time.sleep(2)
                continue
            raise ServicesError(f"POST {path} -> {r.status_code}: {r.text[:2000]}")
        raise AssertionError("unreachable")

    def dag_run(self, dag_id: str, run_id: str) -> dict:
        return self.get(self._run_path(dag_id, run_id))

    def wait_run(self, dag_id: str, run_id: str, states: Iterable[str] = TERMINAL_RUN_STATES,
                 timeout: float = 180.0) -> str:
        """Wait until the run's state is one of ``states``; returns it. On timeout the error lists the TIs."""
        states = set(states)
        deadline = time.monotonic() + timeout
        state = None
        while time.monotonic() < deadline:
            state = self.dag_run(dag_id, run_id)["state"]
            if state in states:
                return state
            time.sleep(POLL)
        raise ServicesError(f"run {dag_id}/{run_id} is {state!r}, not in {sorted(states)} after {timeout:.0f}s; "
                            f"TIs: {self._ti_summary(dag_id, run_id)}\n{self.diagnostics(25)}")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        out: list[dict] = []
        while True:
            page = self.get(f"{self._run_path(dag_id, run_id)}/taskInstances",
                            params={"limit": 100, "offset": len(out)})
            out += page["task_instances"]
            if len(out) >= page["total_entries"] or not page["task_instances"]:
                return out

    def task_instance(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict:
        path = f"{self._run_path(dag_id, run_id)}/taskInstances/{quote(task_id, safe='')}"
        return self.get(path if map_index < 0 else f"{path}/{map_index}")

    def _ti_summary(self, dag_id: str, run_id: str) -> dict:
        with contextlib.suppress(Exception):
            return {ti["task_id"]: (ti["state"], ti["try_number"]) for ti in self.task_instances(dag_id, run_id)}
        return {}

    def wait_ti_state(self, dag_id: str, run_id: str, task_id: str, states: Iterable[str] | str,
                      timeout: float = 120.0) -> dict:
        """Wait until the TI's state is in ``states`` (``None`` allowed); returns the TI."""
        states = {states} if isinstance(states, str) or states is None else set(states)
        deadline = time.monotonic() + timeout
        ti: dict = {}
        while time.monotonic() < deadline:
            ti = self.task_instance(dag_id, run_id, task_id)
            if ti["state"] in states:
                return ti
            time.sleep(POLL)
        raise ServicesError(f"TI {dag_id}/{run_id}/{task_id} is {ti.get('state')!r}, not in {states} after "
                            f"{timeout:.0f}s; run TIs: {self._ti_summary(dag_id, run_id)}\n{self.diagnostics(25)}")

    def set_ti_state(self, dag_id: str, run_id: str, task_id: str, new_state: str, **fields) -> Any:
        """PATCH a TI's state (``"failed"``/``"success"``/...), like marking it in the UI."""
        path = f"{self._run_path(dag_id, run_id)}/taskInstances/{quote(task_id, safe='')}"
        return self.patch(path, {"new_state": new_state, **fields})

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        path = (f"{self._run_path(dag_id, run_id)}/taskInstances/{quote(task_id, safe='')}"
                f"/xcomEntries/{quote(key, safe='')}")
        return self.get(path, params={"map_index": map_index})["value"]

    def ti_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1, map_index: int = -1) -> str:
        """The TI's log through REST, one line per record (``event`` plus any extra fields)."""
        path = f"{self._run_path(dag_id, run_id)}/taskInstances/{quote(task_id, safe='')}/logs/{try_number}"
        body = self.get(path, params={"full_content": "true", "map_index": map_index},
                        headers={"Accept": "application/json"})
        lines = []
        for rec in body.get("content", []):
            if isinstance(rec, str):
                lines.append(rec)
                continue
            extra = {k: v for k, v in rec.items() if k not in ("event", "timestamp", "level", "logger")}
            lines.append(" ".join(filter(None, [str(rec.get("timestamp") or ""), str(rec.get("level") or ""),
                                                str(rec.get("event") or ""), json.dumps(extra) if extra else ""])))
        return "\n".join(lines)

    def log_files(self, dag_id: str, run_id: str | None = None, task_id: str | None = None) -> list[Path]:
        """Task log files on disk: ``attempt=N.log`` (worker) and ``attempt=N.log.trigger.<job>.log`` (triggerer)."""
        base = self.home / "logs" / f"dag_id={dag_id}"
        pattern = f"run_id={run_id or '*'}/task_id={task_id or '*'}/**/attempt=*"
        return sorted(p for p in base.glob(pattern) if p.is_file())

    def trigger_log_files(self, dag_id: str, run_id: str, task_id: str) -> list[Path]:
        """One file per triggerer job that ran the TI's trigger (``attempt=N.log.trigger.<job id>.log``)."""
        return [p for p in self.log_files(dag_id, run_id, task_id) if ".log.trigger." in p.name]

    def wait_trigger_running(self, dag_id: str, run_id: str, task_id: str, *, exclude: Iterable[Path] = (),
                             timeout: float = 60.0) -> Path:
        """Wait until a triggerer has started the TI's trigger -- its trigger log file appears (a file not in
        ``exclude``, e.g. to wait for a restarted triggerer to pick the trigger up). Returns that file."""
        exclude = set(exclude)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            new = [p for p in self.trigger_log_files(dag_id, run_id, task_id) if p not in exclude]
            if new:
                return new[0]
            time.sleep(POLL)
        raise ServicesError(f"no trigger started for {dag_id}/{run_id}/{task_id} after {timeout:.0f}s "
                            f"(TI: {self.task_instance(dag_id, run_id, task_id).get('state')})\n"
                            f"{self.log_tail('triggerer', 40)}")

    # ------------------------------------------------------------------ worker processes

    def ti_ids(self, dag_id: str, task_id: str, run_id: str | None = None) -> set[str]:
        """UUIDs of the task's TIs (current tries) in ``run_id``, or in all runs of the DAG."""
        run = quote(run_id, safe="") if run_id else "~"
        path = f"/api/v2/dags/{quote(dag_id, safe='')}/dagRuns/{run}/taskInstances"
        ids: set[str] = set()
        offset = 0
        while True:
            page = self.get(path, params={"task_id": task_id, "limit": 100, "offset": offset})
            ids |= {ti["id"] for ti in page["task_instances"] if ti["task_id"] == task_id}
            offset += len(page["task_instances"])
            if offset >= page["total_entries"] or not page["task_instances"]:
                return ids

    def worker_processes_for(self, dag_id: str, task_id: str, run_id: str | None = None) -> list[TaskProcess]:
        """Processes currently working on the task: the LocalExecutor worker supervising it
        (title ``airflow worker -- LocalExecutor: <ti id>``) and the task runner
        (title ``airflow worker -- <ti id>``). Empty while the TI is deferred, queued or finished."""
        ids = self.ti_ids(dag_id, task_id, run_id)
        out = []
        for pid in self.leftover_pids():
            title = _cmdline(pid)
            if not title.startswith("airflow worker --"):
                continue
            for ti_id in _UUID_RE.findall(title):
                if ti_id in ids:
                    role = "supervisor" if "LocalExecutor" in title else "task"
                    with contextlib.suppress(OSError):
                        out.append(TaskProcess(pid, os.getpgid(pid), os.getsid(pid), role, ti_id, title))
        return out

    def worker_pids_for(self, dag_id: str, task_id: str, run_id: str | None = None) -> list[int]:
        return sorted(p.pid for p in self.worker_processes_for(dag_id, task_id, run_id))

    def kill_task_processes(self, dag_id: str, task_id: str, run_id: str | None = None, *,
                            roles: Iterable[str] = ("task",), sig: int = signal.SIGKILL) -> list[TaskProcess]:
        """Signal the task's processes of the given roles (``"task"``: the runner's whole process group,
        which includes anything it spawned; ``"supervisor"``: the LocalExecutor worker). Returns them."""
        procs = [p for p in self.worker_processes_for(dag_id, task_id, run_id) if p.role in set(roles)]
        for p in procs:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if p.role == "task" and p.pgid == p.pid:
                    os.killpg(p.pgid, sig)
                else:
                    os.kill(p.pid, sig)
        return procs
