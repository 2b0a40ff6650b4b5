"""A local distributed Airflow: PostgreSQL + Redis + CeleryExecutor with two Celery workers and two triggerers, plus
the emulator. One command brings it up, one takes it down; the tests start one per module from Python.

    scripts/cluster.sh up        # prints the UI URL and the login; idempotent (a running cluster is reported)
    scripts/cluster.sh status    # what runs, with pids and ports
    scripts/cluster.sh down      # stops everything by process group; no process and no port is left

Every component runs in its own session and process group and is stopped by PID/group, never by name:
``postgres`` (Debian's PostgreSQL 15 binaries, run as the ``postgres`` user, private data dir), ``redis-server``
(private port, no persistence), ``python -m emulator``, and Airflow's ``api-server``, ``scheduler``,
``dag-processor``, ``worker-1``/``worker-2`` (``airflow celery worker``) and ``triggerer-1``/``triggerer-2``.
Each Celery worker and triggerer reports its own host name (``127.0.0.1N``/``127.0.0.2N``, loopback addresses that
resolve without DNS) so the REST API's ``triggerer_job.hostname`` / TI ``hostname`` says which process holds what.

The Debian packages ``postgresql`` and ``redis-server`` are installed when missing (root only, after
``apt-get update``). State (pids, ports) is kept in ``<dir>/cluster.json`` so ``down``/``status`` find a cluster
started by another invocation.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness.airflow_services import AirflowServices, Component, free_port, session_pids
from harness.emulator_process import start_emulator
from harness.paths import DAGS, PLUGINS, ROOT

PG_BIN = Path("/usr/lib/postgresql/15/bin")
DEFAULT_DIR = ROOT / ".cluster"
BUCKET = "gemini-tuning-demo"
PROJECT = "demo-project"
TRIGGERERS = ("triggerer-1", "triggerer-2")
WORKERS = ("worker-1", "worker-2")


class ClusterError(RuntimeError):
    pass


def host_of(component: str) -> str:
    """The host name a worker or triggerer reports: a loopback address per component (no DNS needed)."""
    kind, n = component.rsplit("-", 1)
    return f"127.0.0.{10 * (1 if kind == 'triggerer' else 2) + int(n)}"


def component_of(hostname: str | None) -> str | None:
    """The inverse of :func:`host_of` (None for a host name no component of this cluster reports)."""
    for name in (*TRIGGERERS, *WORKERS):
        if hostname == host_of(name):
            return name
    return None


def ensure_debian_packages(*packages: str) -> None:
    """Install what is missing through apt-get (after ``apt-get update``), as root only."""
    missing = [p for p in packages if subprocess.run(["dpkg", "-s", p], capture_output=True).returncode != 0]
    if not missing:
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise ClusterError(f"missing Debian packages {missing}: install them (apt-get install {' '.join(missing)})")
    print(f"==> installing {' '.join(missing)} (apt-get)", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env, stdout=subprocess.DEVNULL)


def _stop_session(sid: int, *, grace: float = 10.0) -> None:
    """SIGTERM every process group of a session, then SIGKILL what is left after ``grace``."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        pids = session_pids(sid)
        if not pids:
            return
        pgids = set()
        for pid in pids:
            with contextlib.suppress(OSError):          # it may exit between the listing and this look-up
                pgids.add(os.getpgid(pid))
        for pgid in pgids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, sig)
        deadline = time.monotonic() + wait
        while session_pids(sid) and time.monotonic() < deadline:
            time.sleep(0.2)


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _started(pid: int) -> float | None:
    """The process's start time (to tell a session id apart from a later one that reused the number)."""
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


@dataclass
class ClusterState:
    dir: str
    pg_port: int
    redis_port: int
    api_port: int = 0
    emulator: dict = field(default_factory=dict)
    sessions: dict = field(default_factory=dict)      # component -> [session ids]
    started: dict = field(default_factory=dict)       # session id -> its leader's start time
    boot_id: str = field(default_factory=_boot_id)
    airflow_home: str = ""


class Cluster:
    """The whole deployment. ``start()`` / ``stop()``; ``services`` is the Airflow harness (REST, logs, kills).

    :param directory: where data, logs and the Airflow home live (``.cluster/`` under the checkout by default).
    :param dags_folder: the DAGs the cluster runs (the pipeline by default).
    :param time_scale: the emulator's time scale (nominal job duration × this).
    :param extra_env: more Airflow settings for every component.
    :param persistent: keep running when this Python process exits (the CLI); tests stop it themselves.
    """

    def __init__(self, directory: Path = DEFAULT_DIR, *, dags_folder: Path | None = None, time_scale: float = 0.02,
                 extra_env: dict[str, str] | None = None, persistent: bool = False):
        self.dir = Path(directory).resolve()
        self.dags_folder = Path(dags_folder or DAGS).resolve()
        self.time_scale = time_scale
        self.extra_env = extra_env or {}
        self.persistent = persistent
        self.state: ClusterState | None = None
        self.services: AirflowServices | None = None
        self.emulator_proc: subprocess.Popen | None = None

    # ------------------------------------------------------------------------------------------ paths
    @property
    def state_file(self) -> Path:
        return self.dir / "cluster.json"

    @property
    def pg_data(self) -> Path:
        return self.dir / "pg" / "data"

    def load_state(self) -> ClusterState | None:
        try:
            return ClusterState(**json.loads(self.state_file.read_text()))
        except (FileNotFoundError, ValueError, TypeError):
            return None

    def _save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        for sids in self.state.sessions.values():
            for sid in sids:
                if str(sid) not in self.state.started and (t := _started(sid)) is not None:
                    self.state.started[str(sid)] = t
        self.state_file.write_text(json.dumps(asdict(self.state), indent=1))

    @staticmethod
    def _ours(state: ClusterState, sid: int) -> bool:
        """Whether session ``sid`` is still the one this cluster started: same boot, and its leader (if alive)
        started when recorded. A stale state file must never make ``down`` signal someone else's session."""
        if state.boot_id != _boot_id():
            return False
        recorded = state.started.get(str(sid))
        now = _started(sid)
        return now is None or recorded is None or abs(now - recorded) < 1.0

    def running(self) -> dict[str, list[int]]:
        """Live processes of a cluster started before (from the state file), by component."""
        state = self.load_state()
        if state is None:
            return {}
        out = {}
        for name, sids in state.sessions.items():
            pids = sorted({p for sid in sids if self._ours(state, sid) for p in session_pids(sid)})
            if pids:
                out[name] = pids
        return out

    # ------------------------------------------------------------------------------------------ postgres
    def _pg(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True, capture_output=True,
                              text=True, **kw)

    def _start_postgres(self) -> None:
        ensure_debian_packages("postgresql")
        pw = pwd.getpwnam("postgres")
        pg_dir = self.pg_data.parent
        pg_dir.mkdir(parents=True, exist_ok=True)
        os.chown(pg_dir, pw.pw_uid, pw.pw_gid)
        for parent in (pg_dir, *pg_dir.parents):      # the postgres user must be able to reach its data dir
            if parent == Path("/"):
                break
            mode = parent.stat().st_mode
            if not mode & 0o001:
                os.chmod(parent, mode | 0o001)
        if not (self.pg_data / "PG_VERSION").exists():
            self._pg(str(PG_BIN / "initdb"), "-D", str(self.pg_data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        port = self.state.pg_port
        log = open(self.dir / "postgres.log", "ab")  # noqa: SIM115 - the server writes it until it stops
        proc = subprocess.Popen(["runuser", "-u", "postgres", "--", str(PG_BIN / "postgres"), "-D", str(self.pg_data),
                                 "-p", str(port), "-k", str(pg_dir), "-c", "listen_addresses=127.0.0.1",
                                 "-c", "max_connections=300", "-c", "fsync=off"],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        self.state.sessions["postgres"] = [proc.pid]
        self._save()
        self._wait_postgres()
        exists = self._psql("SELECT 1 FROM pg_database WHERE datname = 'airflow'").strip()
        if exists != "1":
            self._psql("CREATE USER airflow PASSWORD 'airflow'")
            self._psql("CREATE DATABASE airflow OWNER airflow")

    def _psql(self, sql: str) -> str:
        out = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(self.state.pg_port), "-U", "postgres", "-tAc", sql],
                             check=True, capture_output=True, text=True, timeout=30)
        return out.stdout

    def _wait_postgres(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ok = subprocess.run([str(PG_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.state.pg_port)],
                                capture_output=True).returncode == 0
            if ok:
                return
            time.sleep(0.2)
        raise ClusterError(f"PostgreSQL did not start; see {self.dir / 'postgres.log'}")

    def _pg_fast_stop(self, state: ClusterState) -> None:
        """``pg_ctl stop -m fast``: clients are disconnected and the server shuts down cleanly (a SIGTERM would be
        a smart shutdown that waits for Airflow's pooled connections)."""
        if any(self._ours(state, sid) and session_pids(sid) for sid in state.sessions.get("postgres", [])):
            with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError):
                subprocess.run(["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D",
                                str(Path(state.dir) / "pg" / "data"), "stop", "-m", "fast", "-w", "-t", "30"],
                               capture_output=True, timeout=40, check=True)

    def restart_postgres(self, down_seconds: float = 2.0) -> None:
        """Stop PostgreSQL (fast shutdown: clients are disconnected), wait, start it again."""
        self._pg_fast_stop(self.state)
        for sid in self.state.sessions.get("postgres", []):
            _stop_session(sid)
        time.sleep(down_seconds)
        self._start_postgres()

    @property
    def sql_alchemy_conn(self) -> str:
        return f"postgresql+psycopg2://airflow:airflow@127.0.0.1:{self.state.pg_port}/airflow"

    # ------------------------------------------------------------------------------------------ redis, emulator
    def _start_redis(self) -> None:
        ensure_debian_packages("redis-server")
        rdir = self.dir / "redis"
        rdir.mkdir(parents=True, exist_ok=True)
        log = open(self.dir / "redis.log", "ab")  # noqa: SIM115 - the server writes it until it stops
        proc = subprocess.Popen(["redis-server", "--port", str(self.state.redis_port), "--bind", "127.0.0.1",
                                 "--dir", str(rdir), "--save", "", "--appendonly", "no", "--daemonize", "no"],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        self.state.sessions["redis"] = [proc.pid]
        self._save()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ping = subprocess.run(["redis-cli", "-p", str(self.state.redis_port), "ping"], capture_output=True,
                                  text=True)
            if ping.stdout.strip() == "PONG":
                return
            time.sleep(0.2)
        raise ClusterError(f"Redis did not start; see {self.dir / 'redis.log'}")

    def _start_emulator(self) -> None:
        log = open(self.dir / "emulator.log", "ab")  # noqa: SIM115 - the emulator writes it until it stops
        self.emulator_proc, self.state.emulator = start_emulator(self.dir / "emulator", bucket=BUCKET,
                                                                 time_scale=self.time_scale, stderr=log)
        self.state.sessions["emulator"] = [self.emulator_proc.pid]
        self._save()

    # ------------------------------------------------------------------------------------------ airflow
    def _components(self) -> list[Component]:
        base = [Component(n, (n,)) for n in ("api-server", "scheduler", "dag-processor")]
        triggerers = [Component(n, ("triggerer",),
                                env=(("AIRFLOW_CLUSTER_HOSTNAME", host_of(n)),
                                     ("AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT", str(free_port()))))
                      for n in TRIGGERERS]
        workers = [Component(n, ("celery", "worker", "--concurrency", "4", "--celery-hostname", f"{n}@%h"),
                             env=(("AIRFLOW_CLUSTER_HOSTNAME", host_of(n)),
                                  ("AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT", str(free_port()))),
                             ready_log="ready.")
                   for n in WORKERS]
        return [*base, *triggerers, *workers]

    def _airflow_env(self) -> dict[str, str]:
        emu = self.state.emulator
        redis = f"redis://127.0.0.1:{self.state.redis_port}/0"
        return {
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__GEMINI_TUNING__OPEN_PIPELINE_DAG": "True",   # the open pipeline DAG the cluster tests run
            "AIRFLOW__GEMINI_TUNING__PIPELINES_FOLDER": str(self.dir / "no-pipelines"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.sql_alchemy_conn,
            "AIRFLOW__DATABASE__SQL_ALCHEMY_POOL_PRE_PING": "True",
            "AIRFLOW__CELERY__BROKER_URL": redis,
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql://airflow:airflow@127.0.0.1:{self.state.pg_port}/airflow",
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": "4",
            "AIRFLOW__CORE__PARALLELISM": "16",
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "harness.cluster_hostname.hostname",
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",    # no cron runs: runs are triggered
            "GEMINI_TUNING_EMULATOR_URL": emu["url"], "STORAGE_EMULATOR_HOST": emu["gcs_url"],
            "AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT": json.dumps({"conn_type": "google_cloud_platform",
                                                             "extra": {"is_anonymous": True, "project": PROJECT}}),
            "AIRFLOW_CONN_GEMINI_API_DEFAULT": json.dumps({"conn_type": "gemini_api", "password": "emulator-key"}),
            **self.extra_env,
        }

    def _start_airflow(self) -> None:
        self.services = AirflowServices(dags_folder=self.dags_folder, plugins_folder=PLUGINS,
                                        home=self.dir / "airflow", extra_env=self._airflow_env(),
                                        components=self._components(), startup_timeout=240.0)
        self.state.airflow_home = str(self.services.home)
        self.state.api_port = self.services.api_port
        try:
            self.services.start(register_atexit=not self.persistent)
        finally:
            self.state.sessions.update({n: sorted(s) for n, s in self.services._sids.items()})
            self._save()
        self.wait_triggerers(len(TRIGGERERS))

    def wait_triggerers(self, n: int, timeout: float = 120.0) -> list[dict]:
        """Until ``n`` triggerer jobs are alive, each with its own host name."""
        deadline = time.monotonic() + timeout
        alive = []
        while time.monotonic() < deadline:
            alive = self.services.get("/api/v2/jobs", params={"job_type": "TriggererJob", "is_alive": "true",
                                                              "limit": 100})["jobs"]
            if len({j["hostname"] for j in alive}) >= n:
                return alive
            time.sleep(0.5)
        raise ClusterError(f"{n} triggerers not alive after {timeout:.0f}s: {alive}")

    # ------------------------------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Bring everything up (PostgreSQL, Redis, emulator, Airflow); on failure, tear down what started."""
        if self.running():
            raise ClusterError(f"a cluster is already running from {self.dir} (see `status`; `down` stops it)")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.state = ClusterState(dir=str(self.dir), pg_port=free_port(), redis_port=free_port())
        self._save()
        try:
            self._start_postgres()
            self._start_redis()
            self._start_emulator()
            self._start_airflow()
        except BaseException:
            with contextlib.suppress(Exception):
                self.stop()
            raise

    def stop(self) -> list[int]:
        """Stop every component (Airflow first, then the emulator, Redis, PostgreSQL). Returns what was left."""
        if self.services is not None:
            with contextlib.suppress(Exception):
                self.services.stop()
        state = self.state or self.load_state()
        if state is None:
            return []
        last = ("api-server", "emulator", "redis", "postgres")   # task runners report through the api-server
        order = [n for n in state.sessions if n not in last] + list(last)
        for name in order:
            if name == "postgres":
                self._pg_fast_stop(state)
            for sid in state.sessions.get(name, []):
                if self._ours(state, sid):
                    _stop_session(sid)
        left = sorted({p for sids in state.sessions.values() for sid in sids if self._ours(state, sid)
                       for p in session_pids(sid)})
        if not left:
            with contextlib.suppress(FileNotFoundError):
                self.state_file.unlink()
        return left

    @contextlib.contextmanager
    def supervised(self, interval: float = 1.0):
        """Restart Airflow components that exit, as a deployment's process manager does (Kubernetes'
        ``restartPolicy: Always``, systemd's ``Restart=always``): Airflow's scheduler, dag-processor and triggerers
        exit when the metadata DB goes away. Yields the list of (time, component) restarts."""
        import threading

        restarts: list[tuple[float, str]] = []
        stop = threading.Event()

        def watch():
            while not stop.wait(interval):
                for name, proc in list(self.services.procs.items()):
                    if proc.poll() is not None and not stop.is_set():
                        restarts.append((time.time(), name))
                        with contextlib.suppress(Exception):
                            self.services.start_component(name, wait=False)
                            self.state.sessions[name] = sorted(self.services._sids[name])
                            self._save()

        thread = threading.Thread(target=watch, name="cluster-supervisor", daemon=True)
        thread.start()
        try:
            yield restarts
        finally:
            stop.set()
            thread.join(10)

    def url(self) -> str:
        return f"http://127.0.0.1:{(self.state or self.load_state()).api_port}"


# ---------------------------------------------------------------------------------------------- CLI
def _print_status(cluster: Cluster) -> int:
    running = cluster.running()
    state = cluster.load_state()
    if not running:
        print("no cluster running" + (f" (stale state in {cluster.state_file})" if state else ""))
        return 1
    print(f"cluster in {cluster.dir}: UI {cluster.url()}  (login admin / admin)")
    print(f"  postgres 127.0.0.1:{state.pg_port}  redis 127.0.0.1:{state.redis_port}  "
          f"emulator {state.emulator.get('url')}")
    for name, pids in running.items():
        print(f"  {name:<14} pids {' '.join(map(str, pids))}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["up", "down", "status"])
    ap.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="data, logs and state (default: .cluster/)")
    ap.add_argument("--time-scale", type=float, default=0.02, help="emulator time scale (default 0.02)")
    args = ap.parse_args(argv)
    cluster = Cluster(args.dir, time_scale=args.time_scale, persistent=True)
    if args.command == "status":
        return _print_status(cluster)
    if args.command == "down":
        left = cluster.stop()
        if left:
            print(f"processes left: {left}", file=sys.stderr)
            return 1
        print("cluster stopped: no process left")
        return 0
    if cluster.running():
        print("already up:")
        return _print_status(cluster)
    t0 = time.monotonic()
    cluster.start()
    print(f"cluster up in {time.monotonic() - t0:.0f} s")
    return _print_status(cluster)


if __name__ == "__main__":
    sys.exit(main())
