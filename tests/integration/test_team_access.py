"""Team access with the FAB auth manager, on real services (api-server + dag-processor; no scheduler: a created run
stays queued, which is all these checks need): a member of team_a can neither read nor trigger team_b's pipeline
through the REST API, the Airflow UI's own API or the "Gemini tuning" page, and can read and trigger team_a's.

The two toy DAGs (``toy_dags/team_access.py``) carry ``access_control`` built by
``gemini_tuning.pipelines.access.access_control`` from a pipeline's ``access:`` section; the roles get the
role-level part (``role_permissions``) through ``airflow roles add-perms``, the users are created with ``airflow
users create``, and the dag-processor syncs the DAG-level part when it parses the DAGs. Tokens come from FAB's
``POST /auth/token``.
"""

from __future__ import annotations

import shutil
import sqlite3
import sys
from urllib.parse import quote

import httpx
import pytest

from gemini_tuning.pipelines.access import role_permissions
from harness.paths import PLUGINS, TOY_DAGS

pytestmark = [
    pytest.mark.services,
    pytest.mark.timeout(900),   # FAB: db migrate + Flask app set-up, ~3 min on 2 busy cores
    pytest.mark.skipif(sys.platform != "linux", reason="process tracking reads /proc (sessions, titles)"),
    pytest.mark.full,
]

TOY = TOY_DAGS / "team_access.py"
DAG_A, DAG_B = "gemini_tuning__team_a_demo", "gemini_tuning__team_b_demo"
USERS = {"alice": ("alice-pw", "team_a"), "bob": ("bob-pw", "team_b")}
PAGE = "/gemini-tuning"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    pytest.importorskip("airflow.providers.fab", reason="apache-airflow-providers-fab is not installed")
    from harness.airflow_services import AirflowServices, Component, fab_auth_env

    dags = tmp_path_factory.mktemp("team_dags")
    shutil.copy(TOY, dags / TOY.name)        # only these two DAGs (the other toy DAGs have no access_control)
    af = AirflowServices(dags_folder=dags, plugins_folder=PLUGINS, home=tmp_path_factory.mktemp("home"),
                         extra_env=fab_auth_env(),
                         components=[Component("api-server", ("api-server",)),
                                     Component("dag-processor", ("dag-processor",))])
    perms = role_permissions(["read", "trigger"])
    try:
        af.setup_fab_auth(roles={"team_a": perms, "team_b": perms},
                          users=[(name, pw, role) for name, (pw, role) in USERS.items()])
        af.start()
        for dag_id in (DAG_A, DAG_B):
            af.wait_dag_parsed(dag_id)
        yield af
    except BaseException:
        print(af.diagnostics(60))
        raise
    finally:
        af.stop()


class Client:
    """One user's bearer-token session against the api-server."""

    def __init__(self, base_url: str, username: str, password: str):
        self.http = httpx.Client(base_url=base_url, timeout=30.0)
        r = self.http.post("/auth/token", json={"username": username, "password": password})
        assert r.status_code == 201, r.text
        self.http.headers["Authorization"] = f"Bearer {r.json()['access_token']}"

    def get(self, path: str, **kw) -> httpx.Response:
        return self.http.get(path, **kw)

    def trigger(self, dag_id: str) -> httpx.Response:
        return self.http.post(f"/api/v2/dags/{quote(dag_id, safe='')}/dagRuns", json={"logical_date": None})


@pytest.fixture(scope="module")
def users(stack):
    clients = {name: Client(stack.base_url, name, pw) for name, (pw, _) in USERS.items()}
    yield clients
    for c in clients.values():
        c.http.close()


@pytest.fixture(scope="module")
def runs(stack, users):
    """One run of each team's DAG, triggered by a member of that team (the own-team trigger must be allowed)."""
    out = {}
    for name, dag_id in (("alice", DAG_A), ("bob", DAG_B)):
        r = users[name].trigger(dag_id)
        assert r.status_code == 200, (name, dag_id, r.status_code, r.text)
        out[dag_id] = r.json()["dag_run_id"]
    return out


def test_the_dag_level_permissions_are_synced_into_the_roles(stack):
    """The dag-processor synced each DAG's ``access_control`` into the roles: each team has its own DAG only
    (read from FAB's tables in the services' SQLite DB)."""
    with sqlite3.connect(stack.home / "airflow.db") as db:
        rows = db.execute(
            "SELECT r.name, p.name, v.name FROM ab_permission_view_role pvr "
            "JOIN ab_role r ON r.id = pvr.role_id JOIN ab_permission_view pv ON pv.id = pvr.permission_view_id "
            "JOIN ab_permission p ON p.id = pv.permission_id JOIN ab_view_menu v ON v.id = pv.view_menu_id "
            "WHERE r.name IN ('team_a', 'team_b') AND (v.name LIKE 'DAG:%' OR v.name LIKE 'DAG Run:%')").fetchall()
    got = {(role, action, resource) for role, action, resource in rows}
    want = {(role, action, f"{prefix}:{dag}") for role, dag in (("team_a", DAG_A), ("team_b", DAG_B))
            for prefix, actions in (("DAG", ("can_read", "can_edit")), ("DAG Run", ("can_read", "can_create")))
            for action in actions}
    assert got == want, sorted(got ^ want)


def test_own_team_reads_and_triggers_its_pipeline(stack, users, runs):
    alice = users["alice"]
    assert alice.get(f"/api/v2/dags/{DAG_A}").status_code == 200
    run = alice.get(f"/api/v2/dags/{DAG_A}/dagRuns/{quote(runs[DAG_A], safe='')}")
    assert run.status_code == 200 and run.json()["dag_run_id"] == runs[DAG_A]     # the run was created
    tis = alice.get(f"/api/v2/dags/{DAG_A}/dagRuns/{quote(runs[DAG_A], safe='')}/taskInstances")
    assert tis.status_code == 200 and [t["task_id"] for t in tis.json()["task_instances"]] == ["report"]
    page = alice.get(f"{PAGE}/runs/{DAG_A}/{quote(runs[DAG_A], safe='')}")
    assert page.status_code == 200, page.text[:500]
    assert alice.get(f"{PAGE}/api/runs/{DAG_A}/{quote(runs[DAG_A], safe='')}").status_code == 200


def test_other_team_can_neither_read_nor_trigger_through_the_rest_api(stack, users, runs):
    for name, other in (("alice", DAG_B), ("bob", DAG_A)):
        c = users[name]
        run = quote(runs[other], safe="")
        for path in (f"/api/v2/dags/{other}", f"/api/v2/dags/{other}/details", f"/api/v2/dags/{other}/dagRuns",
                     f"/api/v2/dags/{other}/dagRuns/{run}", f"/api/v2/dags/{other}/dagRuns/{run}/taskInstances",
                     f"/api/v2/dags/{other}/tasks"):
            assert c.get(path).status_code == 403, (name, path)
        before = stack.get(f"/api/v2/dags/{other}/dagRuns")["total_entries"]
        assert c.trigger(other).status_code == 403, name
        assert stack.get(f"/api/v2/dags/{other}/dagRuns")["total_entries"] == before   # no run was created
        listed = {d["dag_id"] for d in c.get("/api/v2/dags").json()["dags"]}
        assert other not in listed and (DAG_A if name == "alice" else DAG_B) in listed, (name, listed)
        ui = c.get("/ui/dags")                                       # what the Airflow UI's DAG list reads
        assert ui.status_code == 200 and other not in ui.text, (name, ui.text[:500])


def test_other_team_is_not_on_the_gemini_tuning_page(stack, users, runs):
    for name, own, other in (("alice", DAG_A, DAG_B), ("bob", DAG_B, DAG_A)):
        c = users[name]
        overview = c.get(f"{PAGE}/api/overview")
        assert overview.status_code == 200, overview.text[:500]
        assert own in overview.text and other not in overview.text, (name, overview.text[:2000])
        html = c.get(f"{PAGE}/")
        assert html.status_code == 200 and own in html.text and other not in html.text, name
        run = quote(runs[other], safe="")
        for path in (f"{PAGE}/runs/{other}/{run}", f"{PAGE}/api/runs/{other}/{run}", f"{PAGE}/report/{other}/{run}"):
            assert c.get(path).status_code == 403, (name, path)
