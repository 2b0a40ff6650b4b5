"""The services harness, proved on a toy DAG: real api-server, scheduler, dag-processor and triggerer.

One stack per module (start-up ~25-40 s). Each test triggers its own run of ``toy_defer`` (see
``toy_dags/toy_defer.py``): ``wait`` defers to the triggerer for ``wait_seconds``, then ``after`` returns a value.
The last test reproduces an Airflow scheduler race with ``toy_dags/defer_race.py``.
"""

from __future__ import annotations

import os
import sys
import time

import pytest

from harness.airflow_services import AirflowServices
from harness.paths import TOY_DAGS

pytestmark = [
    pytest.mark.services,
    pytest.mark.timeout(420),
    pytest.mark.skipif(sys.platform != "linux", reason="process tracking reads /proc (sessions, titles)"),
    pytest.mark.full,
]

DAG = "toy_defer"


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    # Airflow's defaults for the defer race below: a worker reports a defer exit ~5 s late
    # (``[workers] min_heartbeat_interval``; the other stacks use 1 s to narrow that window), and enough worker
    # slots for the resumed attempts to start while the deferring workers still linger.
    af = AirflowServices(dags_folder=TOY_DAGS, home=tmp_path_factory.mktemp("airflow-services"),
                         extra_env={"AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "5",
                                    "AIRFLOW__CORE__PARALLELISM": "12"})
    af.start()
    try:
        af.wait_dag_parsed(DAG)
        yield af
    finally:
        af.stop()
        print(f"\nservices timings: {af.timings}\nhome: {af.home}")
    assert af.leftover_pids() == [], f"processes left behind:\n{af.ps()}"


def _wait_no_worker(af: AirflowServices, run_id: str, task_id: str, timeout: float = 20.0) -> float:
    """Wait until no process works on the TI (the supervisor may linger ~1 s after a defer); returns when."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not af.worker_processes_for(DAG, task_id, run_id):
            return time.monotonic()
        time.sleep(0.5)
    pytest.fail(f"still a worker for {task_id} after {timeout}s: {af.worker_processes_for(DAG, task_id, run_id)}")


def test_run_succeeds_through_the_triggerer(services):
    run_id = services.trigger_dag(DAG, conf={"wait_seconds": 8})
    assert services.wait_run(DAG, run_id, timeout=180) == "success"

    assert services.xcom(DAG, run_id, "after")["ok"] is True
    wait = services.task_instance(DAG, run_id, "wait")
    assert wait["state"] == "success" and wait["try_number"] == 1
    # It really went through the triggerer (a trigger log exists) and resumed on a worker.
    assert services.trigger_log_files(DAG, run_id, "wait")
    assert "resumed with" in services.ti_log(DAG, run_id, "wait")


def test_deferred_task_has_no_worker_process(services):
    run_id = services.trigger_dag(DAG, conf={"pre_seconds": 4, "wait_seconds": 12})

    # Positive control: while execute() runs, the detector sees the supervisor and the task runner.
    services.wait_ti_state(DAG, run_id, "wait", "running")
    seen = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and {p.role for p in seen} != {"supervisor", "task"}:
        seen = services.worker_processes_for(DAG, "wait", run_id)
        time.sleep(0.3)
    assert {p.role for p in seen} == {"supervisor", "task"}, seen
    task_proc = next(p for p in seen if p.role == "task")
    assert task_proc.pgid == task_proc.pid  # the task runner has its own process group

    services.wait_ti_state(DAG, run_id, "wait", "deferred")
    _wait_no_worker(services, run_id, "wait")
    assert services.task_instance(DAG, run_id, "wait")["state"] == "deferred"
    assert not any(pid == task_proc.pid for pid in services.leftover_pids())

    assert services.wait_run(DAG, run_id, timeout=180) == "success"


def test_marking_deferred_task_failed_fails_the_run(services):
    run_id = services.trigger_dag(DAG, conf={"wait_seconds": 600})
    services.wait_ti_state(DAG, run_id, "wait", "deferred")

    services.set_ti_state(DAG, run_id, "wait", "failed")

    assert services.wait_run(DAG, run_id, timeout=90) == "failed"
    tis = {ti["task_id"]: ti["state"] for ti in services.task_instances(DAG, run_id)}
    assert tis == {"wait": "failed", "after": "upstream_failed"}
    _wait_no_worker(services, run_id, "wait")       # the defer exit's worker lingers up to 5 s (fixture)
    assert "resumed with" not in services.ti_log(DAG, run_id, "wait")   # never resumed on a worker


def test_killing_the_task_runner_fails_the_task(services):
    """The primitive for "kill the worker right after it did something" (no retries here, so it fails)."""
    run_id = services.trigger_dag(DAG, conf={"pre_seconds": 60})
    services.wait_ti_state(DAG, run_id, "wait", "running")
    deadline = time.monotonic() + 15
    killed = []
    while not killed and time.monotonic() < deadline:
        killed = services.kill_task_processes(DAG, "wait", run_id, roles=("task",))
        time.sleep(0.3)
    assert [p.role for p in killed] == ["task"]

    services.wait_ti_state(DAG, run_id, "wait", "failed", timeout=60)
    assert services.wait_run(DAG, run_id, timeout=60) == "failed"
    _wait_no_worker(services, run_id, "wait")


def test_triggerer_killed_mid_wait_and_restarted(services):
    run_id = services.trigger_dag(DAG, conf={"wait_seconds": 20})
    services.wait_ti_state(DAG, run_id, "wait", "deferred")
    first = services.wait_trigger_running(DAG, run_id, "wait")  # the trigger really runs in the triggerer

    old = services.component_pids("triggerer")
    assert old
    services.kill_component("triggerer")  # SIGKILL to every process of the triggerer
    assert services.component_pids("triggerer") == []
    assert services.task_instance(DAG, run_id, "wait")["state"] == "deferred"

    services.start_component("triggerer")  # waits for a heartbeat from the new triggerer
    assert not set(old) & set(services.component_pids("triggerer"))
    # The new triggerer job picks the orphaned trigger up once the old job's heartbeat is 10 s stale.
    second = services.wait_trigger_running(DAG, run_id, "wait", exclude=[first])
    assert second != first

    assert services.wait_run(DAG, run_id, timeout=180) == "success"
    assert services.xcom(DAG, run_id, "after")["ok"] is True


@pytest.mark.skipif(os.environ.get("GEMINI_TUNING_REPRO_DEFER_RACE") != "1",
                    reason="a reproduction of an upstream race, not a check of this project: it shows the race "
                           "when it happens (3 of 5 runs on a quiet machine, none of 6 tasks in one CI run under "
                           "load 7), so it runs on request only: GEMINI_TUNING_REPRO_DEFER_RACE=1")
def test_airflow_fails_a_resumed_task_on_a_stale_defer_exit(services):
    """The smallest reproduction of apache/airflow#72716 (open against 3.3.1; still in the pinned 3.3.2, whose
    ``_process_executor_events`` excuses only a ``scheduled`` resumed TI): tasks whose trigger fires at once, the
    resumed attempt running when the worker's late "success" for the defer exit is processed. The scheduler
    logs "state mismatch" and fails that try (README "Known issues": why ``tune`` and ``approval`` keep
    ``retries`` >= 1). When this test fails, the pinned Airflow no longer has the race: drop the note.
    """
    run_id = services.trigger_dag("defer_race", conf={"resume_seconds": 15})
    services.wait_run("defer_race", run_id, timeout=240)
    tis = services.task_instances("defer_race", run_id)
    mismatches = [e for e in services.get("/api/v2/eventLogs", params={"event": "state mismatch", "limit": 100,
                                                                       "dag_id": "defer_race"})["event_logs"]
                  if e["run_id"] == run_id]
    failed = sorted(t["task_id"] for t in tis if t["state"] == "failed")
    print(f"\ndefer race: {len(failed)} of {len(tis)} resumed tasks failed: {failed}")
    assert failed, f"no resumed task was failed by a stale defer exit: {[(t['task_id'], t['state']) for t in tis]}"
    assert {e["task_id"] for e in mismatches} == set(failed)
    for e in mismatches:
        assert "finished with state success, but the task instance's state attribute is running" in e["extra"]
