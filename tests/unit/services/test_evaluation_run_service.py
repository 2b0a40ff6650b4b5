"""``services.evaluation``: the online run (backends built once per kind and closed, the judge pipelined or, with
checkpoints, run afterwards), the finish (results and manifest), the gate (verdict record and ``gate.json``), and
the operators that are thin layers over it (``operators.gate``, ``operators.evaluate``), with GCS in memory."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import pytest

from gemini_tuning.backends import gcs
from gemini_tuning.backends.errors import TuningApiError, TuningDiscontinuedError
from gemini_tuning.backends.vertex_evaluation import Judgement
from gemini_tuning.core.generation import GenerationSettings
from gemini_tuning.core.promptset import Prompt
from gemini_tuning.services import evaluation
from gemini_tuning.services.eval_engine import EngineConfig, Target
from gemini_tuning.services.eval_judge import Judge, JudgeConfig
from gemini_tuning.services.eval_results import EvaluationPlan, ModelTarget

pytestmark = pytest.mark.fast

PREFIX = "gs://b/runs/r1/eval"
ENGINE = EngineConfig(rpm=60_000, attempts=2, initial_backoff=0.0, max_backoff=0.0)


@pytest.fixture
def store(monkeypatch):
    """GCS in memory: what ``gcs.write_bytes`` wrote, read back by ``gcs.read_jsonl`` / ``gcs.read_json``."""
    objects = {}
    monkeypatch.setattr(gcs, "write_bytes", lambda storage, uri, data, content_type=None: objects.__setitem__(
        uri, data))
    monkeypatch.setattr(gcs, "read_jsonl", lambda storage, uri, **_: [json.loads(x) for x in
                                                                      objects[uri].decode().splitlines()])
    monkeypatch.setattr(gcs, "read_json", lambda storage, uri: (json.loads(objects[uri]), 1) if uri in objects
                        else (None, 0))
    return objects


class Backend:
    """Answers the reference (the challenger) or ``"no"`` (anything else); counts what it was asked to do."""

    def __init__(self):
        self.calls, self.closed = 0, 0

    async def agenerate(self, model, prompt, settings):
        self.calls += 1
        return "yes" if model != "champion-endpoint" else "no"

    async def aclose(self):
        self.closed += 1


class FakeJudge:
    def __init__(self):
        self.calls, self.closed = 0, 0

    async def apairwise(self, template, inst, model):
        self.calls += 1
        good = inst["response"] == inst["reference"]
        return Judgement(choice="CANDIDATE" if good else "BASELINE", explanation="x")

    async def apointwise(self, template, inst, model):
        raise AssertionError("pairwise only")

    async def aclose(self):
        self.closed += 1


def plan(n=25, checkpoints=False) -> EvaluationPlan:
    prompts = [Prompt(f"p{i}", f"q{i}", "yes") for i in range(n)]
    if checkpoints:
        ckpts = {f"checkpoint-{i}": {"checkpoint_id": str(i), "epoch": i, "step": 10 * i, "endpoint": f"ep{i}"}
                 for i in (1, 2)}
        models = [ModelTarget(Target(label, "vertex", c["endpoint"], quota="m@1"), "m@1")
                  for label, c in ckpts.items()]
    else:
        ckpts, models = {}, [ModelTarget(Target("challenger", "vertex", "challenger-endpoint"), "m@1")]
    models.append(ModelTarget(Target("champion", "vertex", "champion-endpoint"), "m@0"))
    return EvaluationPlan(prompts, models, GenerationSettings(), {"tuned_model": "m@0", "backend": "vertex"}, 3,
                          ckpts, "gs://b/champion.json")


def run(p: EvaluationPlan, judge_mode="pairwise"):
    backends, judges = [], []

    def backend_for(kind):
        backends.append(Backend())
        return backends[-1]

    def make_judge():
        judges.append(FakeJudge())
        return evaluation.new_judge(JudgeConfig(mode=judge_mode), lambda: judges[-1])

    answers, judge = asyncio.run(evaluation.run_online_evaluation(p, backend_for, ENGINE, make_judge))
    manifest = evaluation.finish_evaluation(None, p, answers, results_prefix=PREFIX, mode="online",
                                            checkpoint_metric="normalized_match", engine=ENGINE, judge=judge,
                                            make_judge=make_judge, checkpoints_wanted=bool(p.checkpoints))
    return manifest, backends, judges, judge


def test_online_one_backend_per_kind_closed_and_the_judge_pipelined(store):
    manifest, backends, judges, judge = run(plan())
    assert len(backends) == 1 and backends[0].calls == 50 and backends[0].closed == 1
    assert len(judges) == 1 and judge is not None and judges[0].closed == 1 and judges[0].calls == 50
    assert manifest["counts"]["challenger"] == {"answered": 25, "error": 0, "missing": 0}
    assert manifest["judge"]["pairwise"]["wins"] == 25 and manifest["champion_generation"] == 3
    rows = [json.loads(x) for x in store[f"{PREFIX}/results.jsonl"].decode().splitlines()]
    assert len(rows) == 25 and all(r["pairwise"]["outcome"] == "win" for r in rows)


def test_with_checkpoints_the_chosen_one_is_judged_afterwards(store):
    manifest, backends, judges, judge = run(plan(checkpoints=True))
    assert judge is None                        # nothing judged while the checkpoints answered
    assert len(judges) == 1 and judges[0].calls == 50 and judges[0].closed == 1
    assert manifest["best_checkpoint"]["checkpoint_id"] == "1"     # a tie: the earlier checkpoint
    assert manifest["models"]["challenger"] == "ep1" and manifest["judge"]["pairwise"]["wins"] == 25


def test_no_judge_no_evaluation_backend():
    built = []
    assert evaluation.new_judge(JudgeConfig(mode="none"), lambda: built.append(1)) is None and built == []
    assert isinstance(evaluation.new_judge(JudgeConfig(mode="both"), lambda: FakeJudge()), Judge)


def test_the_gate_writes_the_verdict_and_gate_json_and_reads_back(store):
    manifest, *_ = run(plan())
    gated = evaluation.gate_evaluation(None, manifest, candidate={"backend": "vertex", "tuned_model": "m@1"},
                                       gate_config={"min_prompts": 20}, verdict_uri=None, dag_id="d", run_id="r",
                                       decided_at="2026-12-01T09:00:00Z")
    assert gated.decision.decision == "promote", gated.decision.summary
    assert gated.verdict_uri == f"{PREFIX}/verdict.json"
    assert evaluation.read_verdict(None, gated.verdict_uri) == gated.verdict
    assert json.loads(store[f"{PREFIX}/gate.json"])["decision"] == "promote"
    assert gated.result["verdict_id"] == gated.verdict["verdict_id"] and gated.verdict["champion"] == {
        "generation": 3, "tuned_model": "champion-endpoint"}
    assert gated.verdict["policy"]["min_prompts"] == 20 and gated.verdict["decided_at"] == "2026-12-01T09:00:00Z"
    for empty in (None, "", "None"):
        assert evaluation.read_verdict(None, empty) is None


def test_the_gate_operator_is_a_thin_branch_over_the_service(store):
    from airflow.sdk.exceptions import AirflowFailException

    from gemini_tuning.operators import evaluate as evaluate_module
    from gemini_tuning.operators.gate import GeminiGateOperator

    assert evaluate_module.GeminiGateOperator is GeminiGateOperator        # its old home still has it
    manifest, *_ = run(plan())
    pushed = {}
    ti = SimpleNamespace(dag_id="d", run_id="r", xcom_push=lambda key, value: pushed.__setitem__(key, value))
    op = GeminiGateOperator(task_id="gate", evaluation=manifest, candidate={"backend": "vertex", "tuned_model": "m@1"},
                            gate_config={"min_prompts": 20})
    op.hook = SimpleNamespace(storage=lambda: None)
    assert op.choose_branch({"ti": ti}) == ["promote"]
    assert pushed["gate"]["decision"] == "promote" and pushed["gate"]["verdict_uri"] == f"{PREFIX}/verdict.json"
    op = GeminiGateOperator(task_id="gate", evaluation=manifest, gate_config={"min_prompts": 100})
    op.hook = SimpleNamespace(storage=lambda: None)
    with pytest.raises(AirflowFailException, match="challenger-endpoint is kept"):   # no decision: too few prompts
        op.choose_branch({"ti": ti})
    with pytest.raises(AirflowFailException, match="no evaluation to gate"):
        GeminiGateOperator(task_id="gate", evaluation="None").choose_branch({"ti": ti})


def test_the_gemini_api_create_call_reports_discontinued_tuning(monkeypatch):
    """The create call's own error meaning (Google refused tuning) lives in the create call, not the transport."""
    from gemini_tuning.backends import gemini_api as g
    from gemini_tuning.backends.contract import JobIdentity
    from gemini_tuning.core.tuning import TuningSpec

    backend = g.GeminiApiTuningBackend(api_key="k")
    monkeypatch.setattr(backend, "_examples", lambda uri: [{"text_input": "1", "output": "2"}])
    spec = TuningSpec(backend="gemini_api", base_model="models/gemini-1.5-flash-001-tuning", training_uri="gs://b/x")
    identity = JobIdentity(key="k" * 24, attempt=1, fingerprint="f")
    for status, message, expected in [(400, "Model tuning is no longer supported. Use Vertex AI.",
                                       TuningDiscontinuedError),
                                      (400, "tuning_task.training_data is required", TuningApiError),
                                      (503, "Model tuning is no longer supported.", TuningApiError)]:
        def send(req, status=status, message=message):
            g.raise_for(status, json.dumps({"error": {"message": message}}), {})

        monkeypatch.setattr(backend.rest, "send", send)
        with pytest.raises(expected) as info:
            backend.create(spec, identity)
        assert type(info.value) is expected and info.value.code == status
