"""Issue "guard rails": the approval step (its body, the branch it follows, the no-wait path) and the UI's history
of rollbacks. The real-services run of the approval is tests/integration/test_approval_services.py; rollback
against the emulator is in tests/integration/test_champion.py and test_rollback_dag.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from gemini_tuning.operators.promote import GeminiApprovalOperator, approval_body
from gemini_tuning.ui import views

GATE = {"decision": "promote", "summary": "promote: all 2 rule(s) passed",
        "rules": [{"name": "min_prompts", "verdict": "pass", "observed": 120, "threshold": 20, "reason": "enough",
                   "details": None},
                  {"name": "threshold:normalized_match", "verdict": "pass", "observed": 0.91, "threshold": 0.6,
                   "reason": "a | b\nc", "details": None}]}


def approval(**kwargs):
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG

    with DAG("approval_test", schedule=None) as dag:
        op = GeminiApprovalOperator(task_id="approval", gate=GATE, **kwargs)
        promote, rejected, cleanup = (EmptyOperator(task_id=t) for t in ("promote", "delete_rejected", "cleanup"))
        op >> [promote, rejected] >> cleanup
        op >> cleanup
    pushed = {}
    ti = SimpleNamespace(task=op, map_index=-1, id="0190-ti", dag_id=dag.dag_id, run_id="manual__1",
                         xcom_push=lambda key, value: pushed.__setitem__(key, value))
    return op, {"ti": ti, "task_instance": ti, "task": op}, pushed


def test_body_lists_every_rule_and_the_links():
    body = approval_body(GATE, candidate={"tuned_model": "projects/p/locations/l/models/9@1"},
                         report_url="http://af/gemini-tuning/report/d/r", run_url="http://af/gemini-tuning/runs/d/r",
                         timeout_hours=72)
    assert body.startswith("**Gate: PROMOTE** — promote: all 2 rule(s) passed")
    assert "| min_prompts | PASS | 120 | 20 | enough |" in body
    assert "| threshold:normalized_match | PASS | 0.91 | 0.6 | a \\| b c |" in body   # table-safe
    assert "[report](http://af/gemini-tuning/report/d/r) · [run page](http://af/gemini-tuning/runs/d/r)" in body
    assert "`projects/p/locations/l/models/9@1`" in body and "no answer within 72 h" in body


def test_not_required_approves_at_once_and_skips_the_reject_branch():
    from airflow.sdk.exceptions import DownstreamTasksSkipped

    op, ctx, pushed = approval(required=False)
    assert op.defaults == ["Reject"]                          # a timeout would answer Reject
    with pytest.raises(DownstreamTasksSkipped) as skipped:
        op.execute(ctx)
    assert skipped.value.tasks == [("delete_rejected", -1)]   # cleanup is downstream of both branches: kept
    assert pushed["return_value"] == {"approved": True, "required": False, "chosen": "Approve",
                                      "responded_by": None, "responded_at": None, "timed_out": False}


def test_required_waits_for_input_with_the_body_and_timeout(monkeypatch):
    import airflow.providers.standard.operators.hitl as hitl
    from airflow.sdk.exceptions import TaskAwaitingInput

    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "http://airflow.example:8080/")
    written = {}
    monkeypatch.setattr(hitl, "upsert_hitl_detail", lambda **kw: written.update(kw))
    op, ctx, _ = approval(required="True", timeout_hours="2.5",
                          report_path="/gemini-tuning/report/approval_test/manual__1")
    with pytest.raises(TaskAwaitingInput) as waiting:
        op.execute(ctx)
    assert waiting.value.timeout == timedelta(hours=2.5) and waiting.value.method_name == "execute_complete"
    assert written["options"] == ["Approve", "Reject"] and written["defaults"] == ["Reject"]
    assert "| min_prompts | PASS | 120 | 20 | enough |" in written["body"]
    assert "(http://airflow.example:8080/gemini-tuning/report/approval_test/manual__1)" in written["body"]


@pytest.mark.parametrize(("chosen", "timedout", "skipped", "approved"), [
    ("Approve", False, "delete_rejected", True),
    ("Reject", False, "promote", False),
    ("Reject", True, "promote", False),        # the scheduler's timeout sweep answers the default
])
def test_the_answer_picks_the_branch(chosen, timedout, skipped, approved):
    from airflow.sdk.exceptions import DownstreamTasksSkipped

    op, ctx, pushed = approval(required=True)
    at = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    who = None if timedout else {"id": "admin", "name": "admin"}
    with pytest.raises(DownstreamTasksSkipped) as err:
        op.execute_complete(ctx, {"chosen_options": [chosen], "params_input": {}, "responded_at": at,
                                  "responded_by_user": who, "timedout": timedout})
    assert err.value.tasks == [(skipped, -1)]
    assert pushed["return_value"] == {"approved": approved, "required": True, "chosen": chosen, "responded_by": who,
                                      "responded_at": at.isoformat(), "timed_out": timedout}


def test_history_shows_rollbacks_with_the_model_they_replaced():
    pointer = "gs://b/pipeline/champion.json"
    promote = views.RunRecord("gemini_tuning_pipeline", "r1", "success", end_date="2026-12-01T10:00:00")
    promote.tasks = {"evaluate": {"operator": "GeminiEvaluateOperator"}, "promote": {"operator":
                                                                                   "GeminiPromoteOperator"},
                     "approval": {"operator": "GeminiApprovalOperator", "state": "success"}}
    promote.xcom = {("evaluate", "return_value"): {"champion_pointer_uri": pointer},
                    ("promote", "return_value"): {"status": "promoted", "pointer_uri": pointer,
                                                  "champion": {"tuned_model": "m2"}}}
    rollback = views.RunRecord("gemini_tuning_rollback", "rb1", "success", end_date="2026-12-01T11:00:00",
                               conf={"pointer_uri": pointer})
    rollback.tasks = {"rollback": {"operator": "GeminiRollbackOperator", "state": "success", "try_number": 1}}
    rollback.xcom = {("rollback", "return_value"): {"status": "rolled_back", "pointer_uri": pointer,
                                                    "champion": {"tuned_model": "m1"}, "rolled_back": "m2"}}
    running = views.RunRecord("gemini_tuning_rollback", "rb2", "running", run_after="2026-12-01T12:00:00",
                              conf={"pointer_uri": pointer})
    running.tasks = {"rollback": {"operator": "GeminiRollbackOperator", "state": "running"}}
    vs = [views.run_view(r) for r in (promote, rollback, running)]
    assert [v["pipeline"] for v in vs] == [pointer] * 3              # one pipeline: the pointer they act on
    assert [s["role"] for s in vs[0]["steps"]] == ["evaluate", "approval", "promote"]
    assert vs[1]["steps"] == [{"task_id": "rollback", "role": "rollback", "state": "success", "try_number": 1}]
    (p,) = views.overview(vs, {pointer: None})["pipelines"]
    assert p["history"] == [
        {"when": "2026-12-01T11:00:00", "run_id": "rb1", "dag_id": "gemini_tuning_rollback", "action": "rolled back",
         "model": "m1", "status": "rolled_back", "rolled_back": "m2"},
        {"when": "2026-12-01T10:00:00", "run_id": "r1", "dag_id": "gemini_tuning_pipeline", "action": "promoted",
         "model": "m2", "status": "promoted"}]


def test_the_failure_clean_up_keeps_a_candidate_that_promote_asked_to_keep():
    """promote failed because another run moved the champion after the gate (or after a human approved): the
    candidate must not be deleted by cleanup_on_failure."""
    from airflow.sdk.exceptions import AirflowSkipException

    from gemini_tuning.operators.promote import KEEP_CANDIDATE, GeminiDeleteTunedModelOperator

    class TI:
        def xcom_pull(self, task_ids, key):
            assert (task_ids, key) == ("promote", KEEP_CANDIDATE)
            return "another run promoted projects/p/locations/l/models/7@1"

    op = GeminiDeleteTunedModelOperator(task_id="cleanup_on_failure", keep_if_task_ids=["promote"],
                                        candidate={"backend": "vertex",
                                                   "tuned_model": "projects/p/locations/l/models/9@1"})
    with pytest.raises(AirflowSkipException, match="keeping projects/p/locations/l/models/9@1"):
        op.execute({"ti": TI()})
