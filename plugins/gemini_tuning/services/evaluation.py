"""One evaluation and its gate, free of Airflow: what the evaluate and gate operators orchestrate.

- :func:`run_online_evaluation`: every target answers every prompt through the engine (``services.eval_engine``);
  the judge (``services.eval_judge``) judges each prompt as its answers come in, unless every checkpoint is
  evaluated (then only the chosen one is judged, afterwards).
- :func:`finish_evaluation`: the best checkpoint, the judging still to do (batch mode, checkpoints), the results
  and the manifest (``services.eval_results``).
- :func:`gate_evaluation`: the result rows through the promotion gate (``core.gate.decide``) into the verdict
  record (``core.verdict``) and ``gate.json``; :func:`read_verdict` reads that record back.

The operators build what needs a connection (backends, storage) and pass it in, as objects or as factories.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from ..backends import gcs
from ..core.gate import GateConfig, GateDecision, decide
from ..core.metrics import Answer
from ..core.verdict import build_verdict, promotion_candidate
from .eval_engine import Engine, EngineConfig, run_online
from .eval_judge import Judge, JudgeConfig
from .eval_results import EvaluationPlan, choose_checkpoint, example_scores, read_rows, write_results

log = logging.getLogger(__name__)

Answers = dict[str, dict[str, Answer]]
#: Builds the judge, or returns None when nothing is to be judged (``JudgeConfig.mode == "none"``).
JudgeFactory = Callable[[], "Judge | None"]


# ---------------------------------------------------------------------------------------------- evaluation
def new_judge(config: JudgeConfig, evaluation_backend: Callable[[], Any]) -> Judge | None:
    """The judge of ``config`` over the backend ``evaluation_backend()`` builds (a
    ``backends.vertex_evaluation.VertexEvaluationBackend``; built only when there is something to judge)."""
    if config.mode == "none":
        return None
    return Judge(evaluation_backend(), config)


async def run_online_evaluation(plan: EvaluationPlan, backend_for: Callable[[str], Any], engine: EngineConfig,
                                make_judge: JudgeFactory | None = None) -> tuple[Answers, Judge | None]:
    """``(answers, the judge when it judged each prompt as its answers came in, else None)``.

    :param backend_for: the tuning backend of a backend name (``vertex``, ``gemini_api``); one per name is built,
        in the event loop, and closed at the end.
    :param make_judge: the judge, if any; not used when the plan evaluates checkpoints (the chosen one is judged
        afterwards, by :func:`finish_evaluation`).
    """
    backends = {}
    judge = None
    try:
        for target in plan.targets:
            if target.backend not in backends:
                backends[target.backend] = backend_for(target.backend)
        judge = make_judge() if make_judge is not None and not plan.checkpoints else None

        async def generate(target, prompt):
            return await backends[target.backend].agenerate(target.model, prompt.prompt, plan.settings)

        answers = await run_online(generate, plan.prompts, plan.targets, engine, after_prompt=judge)
        return answers, judge
    finally:
        for backend in backends.values():
            await backend.aclose()
        if judge is not None:
            await judge.backend.aclose()


async def judge_afterwards(judge: Judge, engine: EngineConfig, plan: EvaluationPlan, answers: Answers) -> Judge:
    """Judging once the answers are all in (batch mode, or the best checkpoint chosen first): the challenger and
    the champion, through an engine of their own; closes the judge's backend."""
    try:
        wanted = {k: v for k, v in answers.items() if k in ("challenger", "champion")}
        await judge.judge_all(Engine(engine), plan.prompts, wanted)
    finally:
        await judge.backend.aclose()
    return judge


def finish_evaluation(storage, plan: EvaluationPlan, answers: Answers, *, results_prefix: str, mode: str,
                      checkpoint_metric: str, engine: EngineConfig, judge: Judge | None = None,
                      make_judge: JudgeFactory | None = None, checkpoints_wanted: bool = False) -> dict:
    """The manifest of the evaluation (``eval_results.write_results``), after choosing the best checkpoint and, if
    ``judge`` did not judge as the answers came in, judging with ``make_judge()`` now.

    :param checkpoints_wanted: checkpoints were asked for (a warning when the plan had fewer than two).
    """
    best = choose_checkpoint(plan, answers, checkpoint_metric)
    if judge is None and make_judge is not None:
        late = make_judge()
        judge = asyncio.run(judge_afterwards(late, engine, plan, answers)) if late is not None else None
    if judge is not None:
        counts = judge.results.counts()
        log.info("judge %s (%s): pairwise %s; pointwise mean judge_score %s", judge.config.model, judge.config.mode,
                 counts if judge.results.pairwise else "-",
                 {label: judge.results.mean(label) for label in judge.results.pointwise})
    if best is not None:
        for c in best["scores"]:
            log.info("checkpoint %s (epoch %s, step %s): %s=%s", c["checkpoint_id"], c["epoch"], c["step"],
                     checkpoint_metric, c["score"])
        log.info("best checkpoint: %s (%s=%s); it is the challenger from here on", best["checkpoint_id"],
                 checkpoint_metric, best["score"])
    elif checkpoints_wanted:
        challenger = next((m.batch_model for m in plan.models if m.target.label == "challenger"), None)
        log.warning("evaluate_checkpoints: %s has fewer than two checkpoints with an endpoint; evaluating it as one "
                    "model", challenger)
    manifest = write_results(storage, plan, answers, results_prefix, mode, best, judge)
    for label, counts in manifest["counts"].items():
        m = manifest["summary"][label]["metrics"]
        log.info("%s: %d answered, %d errors; normalized_match=%s rouge_l_f1=%s", label, counts["answered"],
                 counts["error"], m.get("normalized_match"), m.get("rouge_l_f1"))
    return manifest


# ---------------------------------------------------------------------------------------------- the gate
@dataclass(frozen=True)
class GateOutcome:
    """What :func:`gate_evaluation` decided and wrote.

    :param decision: the gate's decision (``core.gate.GateDecision``), every rule with it.
    :param verdict: the verdict record written.
    :param verdict_uri: where it was written.
    :param result: the gate's result for XCom: the decision with every rule, ``verdict_id``, ``verdict_uri``,
        ``policy_hash``, ``candidate``.
    """

    decision: GateDecision
    verdict: dict
    verdict_uri: str
    result: dict


def utcnow() -> str:
    """Now, as the verdict records it (``2026-12-01T09:00:00.000000Z``)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def gate_evaluation(storage, evaluation: Mapping[str, Any], *, candidate: Mapping[str, Any] | None,
                    gate_config: Mapping[str, Any], verdict_uri: str | None, dag_id: str, run_id: str,
                    decided_at: str | None = None, pipeline: Mapping[str, Any] | None = None) -> GateOutcome:
    """Apply the gate to an evaluation's manifest (``results_uri`` required) and write the verdict record to
    ``verdict_uri`` (None: ``verdict.json`` beside the results) and ``gate.json`` beside the results.

    :param candidate: the tuning result the verdict names (None: the evaluated challenger); the evaluation's
        chosen checkpoint is added (``core.verdict.promotion_candidate``). Its ``dropped_count`` and
        ``example_count`` (the service's data stats) feed the ``max_dropped_fraction`` rule.
    :param gate_config: ``core.gate.GateConfig`` fields; the resolved configuration is the policy recorded.
    :param pipeline: the reviewed pipeline file's provenance (``core.verdict.build_verdict``), or None.
    """
    ev = evaluation
    config = GateConfig.from_dict(gate_config)
    tuned = candidate if isinstance(candidate, Mapping) else {}
    data_stats = {"dropped": tuned.get("dropped_count"), "examples": tuned.get("example_count")}
    candidate = promotion_candidate(candidate or {"tuned_model": ev["models"].get("challenger")}, ev)
    rows = read_rows(storage, ev["results_uri"])
    has_champion = "champion" in ev["models"]
    champion = example_scores(rows, "champion") if has_champion else None
    pairwise = {r["prompt_id"]: r["pairwise"]["outcome"] for r in rows if r.get("pairwise")}
    judged_pairs = (ev.get("judge") or {}).get("mode") in ("pairwise", "both")
    decision = decide(example_scores(rows, "challenger"), champion, config,
                      challenger_summary=ev["summary"]["challenger"], pairwise=pairwise if judged_pairs else None,
                      data_stats=data_stats)
    for rule in decision.rules:
        log.info("gate %-28s %-7s observed=%s threshold=%s — %s", rule.name, rule.verdict.upper(), rule.observed,
                 rule.threshold, rule.reason)
    log.info("gate decision: %s — %s", decision.decision.upper(), decision.summary)
    out = decision.to_dict()
    results_dir = ev["results_uri"].rsplit("/", 1)[0]
    verdict_uri = verdict_uri or f"{results_dir}/verdict.json"
    verdict = build_verdict(decision=decision.decision, summary=decision.summary, rules=out["rules"],
                            candidate=candidate, champion_generation=int(ev.get("champion_generation") or 0),
                            champion_model=ev["models"].get("champion"), policy=config.to_dict(), dag_id=dag_id,
                            run_id=run_id, decided_at=decided_at or utcnow(), results_uri=ev["results_uri"],
                            pipeline=pipeline)
    gcs.write_bytes(storage, verdict_uri, json.dumps(verdict, indent=1, default=str).encode(), "application/json")
    gcs.write_bytes(storage, f"{results_dir}/gate.json", json.dumps(out, indent=1, default=str).encode(),
                    "application/json")
    out.update(verdict_id=verdict["verdict_id"], verdict_uri=verdict_uri, policy_hash=verdict["policy_hash"],
               candidate=verdict["candidate"], pipeline=verdict["pipeline"])
    log.info("verdict %s written to %s (policy %s)", verdict["verdict_id"], verdict_uri, verdict["policy_hash"])
    return GateOutcome(decision, verdict, verdict_uri, out)


def read_verdict(storage, uri: str | None) -> dict | None:
    """The verdict record at ``uri`` (None when absent or no URI)."""
    if uri in (None, "", "None"):
        return None
    obj, _ = gcs.read_json(storage, uri)
    return obj
