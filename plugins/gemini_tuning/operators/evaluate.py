"""Evaluate the tuned model (and the champion, optionally the base model) on a prompt set; gate the result."""

from __future__ import annotations

import asyncio
import json

from airflow.providers.standard.operators.branch import BaseBranchOperator
from airflow.sdk.exceptions import AirflowException

from ..core.generation import GenerationSettings
from ..core.identity import identity_key
from ..core.polling import PollPolicy
from ..core.vocabulary import DEFAULT_PRIMARY_METRIC, GATE_METRIC_NAMES, JUDGED_METRICS
from .base import GeminiBaseOperator, optional


class GeminiEvaluateOperator(GeminiBaseOperator):
    """Answers every prompt with every model under identical settings; writes one result row per prompt to
    ``{results_prefix}/results.jsonl`` (and ``summary.json``) and returns a small manifest whose counts add up to
    the number of prompts.

    ``mode="online"``: async generateContent calls, rate-limited and retried (``services.eval_engine``).
    ``mode="batch"`` (Vertex, for large prompt sets): one batch prediction job per model, each waited for deferred,
    results read from its ``predictions.jsonl`` (``services.eval_batch``); a prompt missing from it is an error row.

    :param prompt_set: local path or ``gs://`` JSONL of ``{prompt, reference, tags?, metric?, id?}`` (templated).
    :param challenger: the tuning task's result (``backend``, ``tuned_model``, ``endpoint``) (templated).
    :param results_prefix: ``gs://`` folder for the results (templated).
    :param champion_pointer_uri: the champion pointer; its model is evaluated too (templated).
    :param base_model: also evaluate this untuned model (templated).
    :param system_instruction: text, or a ``.txt`` path / ``gs://`` URI of it (templated).
    :param temperature: generation temperature, the same for every model (templated).
    :param max_output_tokens: generation limit (templated).
    :param concurrency: calls in flight at most (templated).
    :param rpm: requests per minute at most, per model (each endpoint, the champion, the base model; the judge
        has ``judge_rpm``) (templated).
    :param mode: ``online`` or ``batch`` (templated).
    :param poll_policy: ``core.polling.PollPolicy`` fields for the batch jobs' deferred wait (templated).
    :param evaluate_checkpoints: evaluate every checkpoint of the challenger (one per epoch, each on its own
        endpoint; same engine, one rate limit for all) and make the best by ``checkpoint_metric`` the challenger
        (ties: the earlier checkpoint). Online mode only (templated).
    :param checkpoint_metric: the metric that picks the checkpoint; give the gate's primary metric (templated).
    :param judge: model-based evaluation through Vertex's evaluation service (``services.eval_judge``):
        ``none`` (default), ``pointwise`` (a 1-5 rubric score per answer: metric ``judge_score``), ``pairwise``
        (challenger vs champion, judged twice with the order swapped: win/loss/tie per prompt for the gate's
        pairwise rule) or ``both`` (templated).
    :param judge_model: the autorater model (templated).
    :param judge_pointwise_template: / :param judge_pairwise_template: metric prompt templates (None: the
        defaults of ``backends.vertex_evaluation``; a prompt's own ``judge_template``/``pairwise_template`` wins)
        (templated).
    :param judge_rpm: the judge model's requests per minute (None: ``rpm``) (templated).

    And the connection arguments of :class:`~gemini_tuning.operators.base.GeminiBaseOperator`.
    """

    template_fields = ("prompt_set", "challenger", "results_prefix", "champion_pointer_uri", "base_model",
                       "system_instruction", "project_id", "location", "temperature", "max_output_tokens", "rpm",
                       "concurrency", "mode", "poll_policy", "evaluate_checkpoints", "checkpoint_metric", "judge",
                       "judge_model", "judge_pointwise_template", "judge_pairwise_template", "judge_rpm")
    BATCH_XCOM = "gemini_tuning_batch_jobs"

    def __init__(self, *, prompt_set: str, challenger, results_prefix: str, champion_pointer_uri: str | None = None,
                 base_model: str | None = None, system_instruction: str | None = None, temperature=0.0,
                 max_output_tokens=256, concurrency=16, rpm=600, mode: str = "online",
                 poll_policy: dict | None = None, evaluate_checkpoints=False,
                 checkpoint_metric: str = DEFAULT_PRIMARY_METRIC, judge: str = "none",
                 judge_model: str = "gemini-2.5-flash", judge_pointwise_template: str | None = None,
                 judge_pairwise_template: str | None = None, judge_rpm=None, **kwargs):
        super().__init__(**kwargs)
        self.judge = judge
        self.judge_model = judge_model
        self.judge_pointwise_template = judge_pointwise_template
        self.judge_pairwise_template = judge_pairwise_template
        self.judge_rpm = judge_rpm
        self.evaluate_checkpoints = evaluate_checkpoints
        self.checkpoint_metric = checkpoint_metric
        self.prompt_set = prompt_set
        self.challenger = challenger
        self.results_prefix = results_prefix
        self.champion_pointer_uri = champion_pointer_uri
        self.base_model = base_model
        self.system_instruction = system_instruction
        self.temperature = temperature
        self.max_output_tokens = max_output_tokens
        self.concurrency = concurrency
        self.rpm = rpm
        self.mode = mode
        self.poll_policy = poll_policy

    def _plan(self):
        from ..services.eval_results import EvaluationInputError, plan_evaluation, read_text_or_file
        from .inputs import input_policy

        # the prompt set and a system instruction file only from the input roots / allowed buckets (core.inputs)
        inputs = input_policy([self.results_prefix, optional(self.champion_pointer_uri)])
        storage = self.hook.storage()
        settings = GenerationSettings(temperature=float(self.temperature),
                                      max_output_tokens=int(self.max_output_tokens),
                                      system_instruction=read_text_or_file(optional(self.system_instruction),
                                                                           storage, policy=inputs))
        try:
            return plan_evaluation(storage, prompt_set=self.prompt_set, challenger=self.challenger,
                                   champion_pointer_uri=optional(self.champion_pointer_uri),
                                   base_model=optional(self.base_model), settings=settings,
                                   evaluate_checkpoints=self._checkpoints_wanted(), inputs=inputs)
        except EvaluationInputError as exc:
            raise AirflowException(str(exc)) from exc

    def _checkpoints_wanted(self) -> bool:
        wanted = self.evaluate_checkpoints
        return wanted.strip().lower() in ("1", "true", "yes") if isinstance(wanted, str) else bool(wanted)

    def _judge_config(self):
        from ..services.eval_judge import JudgeConfig

        try:
            return JudgeConfig(mode=optional(self.judge) or "none", model=self.judge_model,
                               pointwise_template=optional(self.judge_pointwise_template),
                               pairwise_template=optional(self.judge_pairwise_template),
                               rpm=optional(self.judge_rpm, float))
        except ValueError as exc:
            raise AirflowException(str(exc)) from exc

    def _engine_config(self):
        from ..services.eval_engine import EngineConfig

        return EngineConfig(concurrency=int(self.concurrency), rpm=float(self.rpm))

    def _new_judge(self):
        from ..services.eval_judge import Judge

        cfg = self._judge_config()
        if cfg.mode == "none":
            return None
        return Judge(self.hook.vertex_evaluation(optional(self.project_id), self.location), cfg)

    async def _judge_afterwards(self, plan, answers):
        """Judging after the answers are all in: batch mode, or the best checkpoint chosen first."""
        from ..services.eval_engine import Engine

        judge = self._new_judge()
        try:
            wanted = {k: v for k, v in answers.items() if k in ("challenger", "champion")}
            await judge.judge_all(Engine(self._engine_config()), plan.prompts, wanted)
        finally:
            await judge.backend.aclose()
        return judge

    def _finish(self, plan, answers, judge=None) -> dict:
        from ..services.eval_results import choose_checkpoint, write_results

        best = choose_checkpoint(plan, answers, self.checkpoint_metric)
        if judge is None and self._judge_config().mode != "none":
            judge = asyncio.run(self._judge_afterwards(plan, answers))
        if judge is not None:
            counts = judge.results.counts()
            self.log.info("judge %s (%s): pairwise %s; pointwise mean judge_score %s", judge.config.model,
                          judge.config.mode, counts if judge.results.pairwise else "-",
                          {label: judge.results.mean(label) for label in judge.results.pointwise})
        if best is not None:
            for c in best["scores"]:
                self.log.info("checkpoint %s (epoch %s, step %s): %s=%s", c["checkpoint_id"], c["epoch"], c["step"],
                              self.checkpoint_metric, c["score"])
            self.log.info("best checkpoint: %s (%s=%s); it is the challenger from here on", best["checkpoint_id"],
                          self.checkpoint_metric, best["score"])
        elif self._checkpoints_wanted():
            self.log.warning("evaluate_checkpoints: %s has fewer than two checkpoints with an endpoint; evaluating "
                             "it as one model", (self.challenger or {}).get("tuned_model"))
        manifest = write_results(self.hook.storage(), plan, answers, self.results_prefix, self.mode, best, judge)
        for label, counts in manifest["counts"].items():
            m = manifest["summary"][label]["metrics"]
            self.log.info("%s: %d answered, %d errors; normalized_match=%s rouge_l_f1=%s", label, counts["answered"],
                          counts["error"], m.get("normalized_match"), m.get("rouge_l_f1"))
        return manifest

    def execute(self, context):
        if self.mode not in ("online", "batch"):
            raise AirflowException(f"mode must be 'online' or 'batch', got {self.mode!r}")
        if self.checkpoint_metric not in GATE_METRIC_NAMES:
            raise AirflowException(f"checkpoint_metric must be one of {GATE_METRIC_NAMES}, "
                                   f"got {self.checkpoint_metric!r}")
        if self._checkpoints_wanted() and self.checkpoint_metric in JUDGED_METRICS:
            raise AirflowException(f"checkpoint_metric={self.checkpoint_metric!r}: the judge scores the chosen "
                                   "checkpoint only; pick the checkpoint by a computed metric")
        if self.mode == "batch" and self._checkpoints_wanted():
            raise AirflowException("evaluate_checkpoints needs mode='online': each checkpoint is served from its "
                                   "own endpoint, and a batch prediction job reads a model version's default "
                                   "checkpoint only")
        plan = self._plan()
        self.log.info("evaluating %d prompts from %s (%s mode) against %s (temperature %s)", len(plan.prompts),
                      self.prompt_set, self.mode, ", ".join(f"{t.label}={t.model}" for t in plan.targets),
                      plan.settings.temperature)
        if self.mode == "batch":
            return self._start_batch(context, plan)
        return self._finish(plan, *asyncio.run(self._online(plan)))

    async def _online(self, plan):
        """(answers, the judge when it judged each prompt as its answers came in, else None)."""
        from ..services.eval_engine import run_online

        backends = {t.backend: self.tuning_backend(t.backend) for t in plan.targets}
        judge = self._new_judge() if not plan.checkpoints else None   # checkpoints: judge the chosen one after

        async def generate(target, prompt):
            return await backends[target.backend].agenerate(target.model, prompt.prompt, plan.settings)

        try:
            answers = await run_online(generate, plan.prompts, plan.targets, self._engine_config(),
                                       after_prompt=judge)
            return answers, judge
        finally:
            for backend in backends.values():
                await backend.aclose()
            if judge is not None:
                await judge.backend.aclose()

    # ------------------------------------------------------------------------------------------ batch mode
    def _start_batch(self, context, plan):
        from ..services.eval_batch import start_jobs

        if any(t.backend != "vertex" for t in plan.targets):
            raise AirflowException("mode='batch' needs the Vertex backend (batch prediction jobs)")
        ti = context["ti"]
        jobs = start_jobs(self.hook.vertex_batch(optional(self.project_id), self.location), self.hook.storage(),
                          key=identity_key(ti.dag_id, ti.task_id, ti.run_id, ti.map_index),
                          results_prefix=self.results_prefix, models=plan.models, prompts=plan.prompts,
                          settings=plan.settings)
        ti.xcom_push(key=self.BATCH_XCOM, value={"jobs": jobs, "pending": list(jobs)})
        return self._defer_batch(jobs[next(iter(jobs))])

    def _defer_batch(self, name: str):
        from ..triggers import BatchPredictionJobTrigger

        self.defer(trigger=BatchPredictionJobTrigger(job_name=name, **self.trigger_connection(),
                                                     poll=PollPolicy(**(self.poll_policy or {})).to_dict()),
                   method_name="execute_batch_complete")

    def execute_batch_complete(self, context, event: dict, **_):
        """Resumed after each batch job: defer on the next, or read every job's predictions and finish. (The state
        is in XCom, not in defer kwargs, which ``dag.test()`` drops.)"""
        from ..services.eval_batch import read_predictions

        if event.get("status") != "success":
            raise AirflowException(f"batch job {event.get('job_name')} did not succeed: "
                                   f"{(event.get('job') or {}).get('error_message') or event.get('message')}")
        ti = context["ti"]
        state = ti.xcom_pull(task_ids=self.task_id, key=self.BATCH_XCOM)
        pending = [label for label in state["pending"] if state["jobs"][label] != event["job_name"]]
        if pending:
            ti.xcom_push(key=self.BATCH_XCOM, value={"jobs": state["jobs"], "pending": pending})
            return self._defer_batch(state["jobs"][pending[0]])
        plan = self._plan()
        batch = self.hook.vertex_batch(optional(self.project_id), self.location)
        storage = self.hook.storage()
        answers = {t.label: read_predictions(storage, batch.get(state["jobs"][t.label]).output_uri, plan.prompts)
                   for t in plan.targets}
        return self._finish(plan, answers)


class GeminiGateOperator(GeminiBaseOperator, BaseBranchOperator):
    """Applies the promotion gate (``core.gate.decide``) to the evaluation, writes the **verdict record**
    (``core.verdict``: the decision, the candidate model version and checkpoint, the champion pointer generation it
    was compared with, the policy and its hash) to ``verdict_uri``, and follows ``promote_task_ids`` or
    ``delete_task_id``. The decision with every rule's value and verdict also goes to XCom (key ``gate``, with
    ``verdict_id`` and ``verdict_uri``).

    **No decision** (too few scored prompts, or the generation service or the judge failed more often than
    ``max_error_rate``) is not a verdict on the model: the record says ``no_decision``, the task fails (no retry)
    and the candidate is kept, so the evaluation can be rerun (clear ``evaluate``) once the service is back.

    :param evaluation: the evaluation task's manifest (templated).
    :param candidate: the tuning task's result (templated): the verdict names its model version and checkpoint
        (the evaluation's chosen checkpoint, when it scored every checkpoint).
    :param gate_config: ``core.gate.GateConfig`` fields (templated; values may be templated strings). The
        resolved configuration is the *policy* the verdict records (and hashes).
    :param verdict_uri: ``gs://`` URI of the verdict record (templated); default ``verdict.json`` beside the
        results.
    :param promote_task_ids: the branch(es) to follow when the challenger wins.
    :param delete_task_id: the branch to follow when it loses.

    And the connection arguments of :class:`~gemini_tuning.operators.base.GeminiBaseOperator`.
    """

    template_fields = ("evaluation", "candidate", "gate_config", "verdict_uri")

    def __init__(self, *, evaluation, candidate=None, gate_config: dict | None = None, verdict_uri: str | None = None,
                 promote_task_ids: str | list[str] = "promote", delete_task_id: str = "delete", **kwargs):
        super().__init__(**kwargs)
        self.evaluation = evaluation
        self.candidate = candidate
        self.gate_config = gate_config or {}
        self.verdict_uri = verdict_uri
        self.promote_task_ids = [promote_task_ids] if isinstance(promote_task_ids, str) else list(promote_task_ids)
        self.delete_task_id = delete_task_id

    def choose_branch(self, context):
        from airflow.sdk.exceptions import AirflowFailException

        from ..backends import gcs
        from ..core.gate import GateConfig, decide
        from ..core.verdict import NO_DECISION, build_verdict, promotion_candidate
        from ..services.eval_results import example_scores, read_rows

        storage = self.hook.storage()
        ev = self.evaluation
        if not isinstance(ev, dict) or not ev.get("results_uri"):
            raise AirflowFailException(f"no evaluation to gate (the evaluate step's result: {ev!r:.200})")
        config = GateConfig.from_dict(self.gate_config)
        # without the tuning result (the operator used on its own) the verdict names the evaluated challenger
        candidate = promotion_candidate(self.candidate or {"tuned_model": ev["models"].get("challenger")}, ev)
        rows = read_rows(storage, ev["results_uri"])
        has_champion = "champion" in ev["models"]
        champion = example_scores(rows, "champion") if has_champion else None
        pairwise = {r["prompt_id"]: r["pairwise"]["outcome"] for r in rows if r.get("pairwise")}
        judged_pairs = (ev.get("judge") or {}).get("mode") in ("pairwise", "both")
        decision = decide(example_scores(rows, "challenger"), champion, config,
                          challenger_summary=ev["summary"]["challenger"],
                          pairwise=pairwise if judged_pairs else None)
        for rule in decision.rules:
            self.log.info("gate %-28s %-7s observed=%s threshold=%s — %s", rule.name, rule.verdict.upper(),
                          rule.observed, rule.threshold, rule.reason)
        self.log.info("gate decision: %s — %s", decision.decision.upper(), decision.summary)
        out = decision.to_dict()
        ti = context["ti"]
        results_dir = ev["results_uri"].rsplit("/", 1)[0]
        verdict_uri = optional(self.verdict_uri) or f"{results_dir}/verdict.json"
        verdict = build_verdict(decision=decision.decision, summary=decision.summary, rules=out["rules"],
                                candidate=candidate, champion_generation=int(ev.get("champion_generation") or 0),
                                champion_model=ev["models"].get("champion"),
                                policy=config.to_dict(), dag_id=ti.dag_id, run_id=ti.run_id,
                                decided_at=_utcnow(), results_uri=ev["results_uri"])
        gcs.write_bytes(storage, verdict_uri, json.dumps(verdict, indent=1, default=str).encode(), "application/json")
        gcs.write_bytes(storage, f"{results_dir}/gate.json", json.dumps(out, indent=1, default=str).encode(),
                        "application/json")
        out.update(verdict_id=verdict["verdict_id"], verdict_uri=verdict_uri, policy_hash=verdict["policy_hash"],
                   candidate=verdict["candidate"])
        ti.xcom_push(key="gate", value=out)
        self.log.info("verdict %s written to %s (policy %s)", verdict["verdict_id"], verdict_uri,
                      verdict["policy_hash"])
        if decision.decision == NO_DECISION:
            raise AirflowFailException(f"{decision.summary}. Candidate {candidate['tuned_model']} is kept (not "
                                       "deleted, not promoted); clear the evaluate task to rerun the evaluation")
        return self.promote_task_ids if decision.promote else self.delete_task_id


def _utcnow() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
