"""Issue "guard rails": the approval step (its body, the branch it follows, the no-wait path) and the UI's history
of rollbacks. The real-services run of the approval is tests/integration/test_approval_services.py; rollback
against the emulator is in tests/integration/test_champion.py and test_rollback_dag.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from gemini_tuning.operators.approval import GeminiApprovalOperator, approval_body
from gemini_tuning.ui import views

pytestmark = pytest.mark.fast

GATE = {"decision": "promote", "summary": "promote: all 2 rule(s) passed",
        "rules": [{"name": "min_prompts", "verdict": "pass", "observed": 120, "threshold": 20, "reason": "enough",
                   "details": None},
                  {"name": "threshold:normalized_match", "verdict": "pass", "observed": 0.91, "threshold": 0.6,
                   "reason": "a | b\nc", "details": None}]}


def verdict(decision="promote", run_id="manual__1", **over):
    from gemini_tuning.core.verdict import build_verdict

    args = {"decision": decision, "summary": GATE["summary"], "rules": GATE["rules"],
            "candidate": {"backend": "vertex", "tuned_model": "projects/p/locations/l/models/9@1"},
            "champion_generation": 0, "champion_model": None, "policy": {"min_prompts": 20}, "dag_id": "approval_test",
            "run_id": run_id, "decided_at": "2026-12-01T09:00:00Z", **over}
    return build_verdict(**args)


def approval(record=None, **kwargs):
    """The approval operator in a DAG, its context and what it pushes; the verdict record read is ``record``
    (default: a promote verdict of this run)."""
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG

    record = verdict() if record is None else record
    with DAG("approval_test", schedule=None) as dag:
        op = GeminiApprovalOperator(task_id="approval", verdict_uri="gs://b/run/verdict.json", **kwargs)
        promote, rejected, cleanup = (EmptyOperator(task_id=t) for t in ("promote", "delete_rejected", "cleanup"))
        op >> [promote, rejected] >> cleanup
        op >> cleanup
    pushed = {}
    ti = SimpleNamespace(task=op, map_index=-1, id="0190-ti", dag_id=dag.dag_id, run_id="manual__1",
                         xcom_push=lambda key, value: pushed.__setitem__(key, value),
                         xcom_pull=lambda task_ids, key="return_value": pushed.get(key))
    op._verdict_record = record
    return op, {"ti": ti, "task_instance": ti, "task": op}, pushed


@pytest.fixture(autouse=True)
def _verdict_reads(monkeypatch):
    """The approval reads its verdict from GCS: here from the operator's ``_verdict_record``."""
    from gemini_tuning.operators import approval as approval_module

    class Hook:
        def __init__(self, **_):
            pass

        def storage(self):
            return None

    monkeypatch.setattr("gemini_tuning.hooks.GeminiTuningHook", Hook)
    current = {}
    monkeypatch.setattr(approval_module, "read_verdict", lambda storage, uri: current["record"])
    original = GeminiApprovalOperator._verdict

    def _verdict(self, context):
        current["record"] = self._verdict_record
        return original(self, context)

    monkeypatch.setattr(GeminiApprovalOperator, "_verdict", _verdict)


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
                                      "responded_by": None, "responded_at": None, "timed_out": False,
                                      "verdict_id": verdict()["verdict_id"]}


@pytest.mark.parametrize(("record", "message"), [
    (None, "no approval without a promote verdict: no verdict record at gs://b/run/verdict.json"),
    ("delete", "the gate's verdict is DELETE, not PROMOTE"),
    ("no_decision", "the gate's verdict is NO_DECISION, not PROMOTE"),
    ("other-run", "is the verdict of approval_test/manual__2, not of this run"),
    ("tampered", "was changed after the gate wrote it"),
])
@pytest.mark.parametrize("required", [False, True])
def test_never_approves_without_a_promote_verdict(record, message, required):
    """Not even automatically: a crashed gate (no record), a delete or no-decision verdict, another run's record
    or an edited one fail the approval; nothing is pushed, nobody is asked."""
    from airflow.sdk.exceptions import AirflowFailException

    rec = {None: False, "delete": verdict("delete"), "no_decision": verdict("no_decision"),
           "other-run": verdict(run_id="manual__2"),
           "tampered": {**verdict(), "decision": "promote", "summary": "edited"}}[record]
    op, ctx, pushed = approval(record=rec, required=required)
    op._verdict_record = None if rec is False else rec
    with pytest.raises(AirflowFailException, match=message):
        op.execute(ctx)
    assert pushed == {}


def test_an_answer_to_another_verdict_is_refused():
    """The gate ran again while the approval waited (another candidate or policy): the Approve does not carry
    over."""
    from airflow.sdk.exceptions import AirflowFailException

    op, ctx, pushed = approval(required=True)
    pushed[GeminiApprovalOperator.ASKED_XCOM] = verdict()["verdict_id"]
    op._verdict_record = verdict(policy={"min_prompts": 1})                    # a looser policy, a new verdict
    event = {"chosen_options": ["Approve"], "params_input": {}, "responded_at": datetime(2026, 12, 1, tzinfo=UTC),
             "responded_by_user": {"id": "admin", "name": "admin"}, "timedout": False}
    with pytest.raises(AirflowFailException, match="the approval was given for verdict .* but the verdict is now"):
        op.execute_complete(ctx, event)
    assert "return_value" not in pushed


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
    assert f"Verdict `{verdict()['verdict_id']}` (policy `sha256:" in written["body"]
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
    pushed[GeminiApprovalOperator.ASKED_XCOM] = verdict()["verdict_id"]
    at = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    who = None if timedout else {"id": "admin", "name": "admin"}
    with pytest.raises(DownstreamTasksSkipped) as err:
        op.execute_complete(ctx, {"chosen_options": [chosen], "params_input": {}, "responded_at": at,
                                  "responded_by_user": who, "timedout": timedout})
    assert err.value.tasks == [(skipped, -1)]
    assert pushed["return_value"] == {"approved": approved, "required": True, "chosen": chosen, "responded_by": who,
                                      "responded_at": at.isoformat(), "timed_out": timedout,
                                      "verdict_id": verdict()["verdict_id"]}


def test_history_shows_rollbacks_with_the_model_they_replaced():
    pointer = "gs://gemini-tuning-b/pipeline/champion.json"
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


@pytest.mark.parametrize(("task", "delete_on", "record", "approval_result", "outcome"), [
    ("delete", ("delete",), "delete", None, "deleted"),
    ("delete", ("delete",), "promote", None, "keeping .*: it passed the gate"),
    ("delete", ("delete",), None, None, "keeping .*: no verdict record"),
    ("delete", ("delete",), "no_decision", None, "keeping .*: the gate made no decision"),
    ("delete_rejected", ("reject",), "promote", {"approved": False}, "deleted"),
    ("delete_rejected", ("reject",), "promote", {"approved": True}, "keeping .*: it passed the gate and no"),
    ("delete_rejected", ("reject",), "promote", {"approved": False, "verdict_id": "another"}, "keeping"),
    ("delete_rejected", ("reject",), "delete", None, "keeping"),      # delete verdicts are delete's, not its
    ("cleanup_on_failure", ("delete", "reject"), "promote", None, "keeping .*: it passed the gate"),
    ("cleanup_on_failure", ("delete", "reject"), "delete", None, "deleted"),
])
def test_a_delete_needs_a_verdict_or_a_rejection_that_doomed_the_candidate(monkeypatch, task, delete_on, record,
                                                                          approval_result, outcome):
    """Who owns a candidate after a failure: the verdict. Only a delete verdict, or a human's rejection bound to the
    promote verdict, deletes it; everything else keeps it, saying why."""
    from airflow.sdk.exceptions import AirflowSkipException

    from gemini_tuning.operators import promote as promote_module
    from gemini_tuning.operators.promote import GeminiDeleteTunedModelOperator
    from gemini_tuning.services import champion

    cand = {"backend": "vertex", "tuned_model": "projects/p/locations/l/models/9@1", "endpoint": None}
    rec = verdict(record) if record else None
    monkeypatch.setattr(promote_module, "read_verdict", lambda storage, uri: rec)
    deleted = []
    monkeypatch.setattr(champion, "delete_candidate", lambda c, **kw: deleted.append(c) or {"model_deleted": True})
    op = GeminiDeleteTunedModelOperator(task_id=task, candidate=cand, verdict_uri="gs://b/run/verdict.json",
                                        delete_on=delete_on, approval_task_id="approval")
    op.hook = SimpleNamespace(storage=lambda: None, registry=lambda *a: None, gemini_api=lambda *a: None)
    answer = None if approval_result is None else {"verdict_id": rec["verdict_id"], **approval_result}
    ti = SimpleNamespace(dag_id="approval_test", run_id="manual__1",
                         xcom_pull=lambda task_ids, key="return_value": answer if task_ids == "approval" else None)
    if outcome == "deleted":
        op.execute({"ti": ti})
        assert deleted == [cand]
    else:
        with pytest.raises(AirflowSkipException, match=outcome):
            op.execute({"ti": ti})
        assert deleted == []
