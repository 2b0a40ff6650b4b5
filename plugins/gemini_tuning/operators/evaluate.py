"""Evaluate the tuned model (and the champion, optionally the base model) on a prompt set (``services.evaluation``).

The gate that follows has a module of its own, ``operators.gate`` (re-exported here).
"""

from __future__ import annotations

import asyncio

from airflow.sdk.exceptions import AirflowException

from ..core.generation import GenerationSettings
from ..core.identity import identity_key
from ..core.polling import PollPolicy
from ..core.templated import parse_bool
from ..core.vocabulary import DEFAULT_PRIMARY_METRIC, GATE_METRIC_NAMES, JUDGED_METRICS
from .base import GeminiBaseOperator, optional
from .gate import GeminiGateOperator

__all__ = ["GeminiEvaluateOperator", "GeminiGateOperator"]   # the gate's old home: importers of it from here work


class GeminiEvaluateOperator(GeminiBaseOperator):
    """Answers every prompt with every model under identical settings; writes one result row per prompt to
    ``{results_prefix}/results.jsonl`` (and ``summary.json``) and returns a small manifest whose counts add up to
    the number of prompts.

    ``mode="online"``: async generateContent calls, rate-limited and retried (``services.eval_engine``), the judge
    pipelined (``services.evaluation``).
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
        (ties: the earlier checkpoint). Online mode only (templated: ``core.templated.parse_bool``'s words, empty
        means False, any other value fails the task).
    :param checkpoint_metric: the metric that picks the checkpoint; give the gate's primary metric (templated).
    :param judge: model-based evaluation through Vertex's evaluation service (``services.eval_judge``):
        ``none`` (default), ``pointwise`` (a 1-5 rubric score per answer: metric ``judge_score``), ``pairwise``
        (challenger vs champion, judged twice with the order swapped: win/loss/tie per prompt for the gate's
        pairwise rule) or ``both`` (templated).
    :param judge_model: the autorater model (templated).
    :param judge_pointwise_template: the pointwise metric prompt template (None: the default of
        ``backends.vertex_evaluation``; a prompt's own ``judge_template`` wins) (templated).
    :param judge_pairwise_template: the pairwise metric prompt template (None: the default; a prompt's own
        ``pairwise_template`` wins) (templated).
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
        try:   # core.templated's words; empty: False; any other value fails the task before any call
            return parse_bool(self.evaluate_checkpoints, "evaluate_checkpoints", default=False)
        except ValueError as exc:
            raise AirflowException(str(exc)) from exc

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
        """The judge of this task (None: ``judge="none"``), over Vertex's evaluation service."""
        from ..services.evaluation import new_judge

        return new_judge(self._judge_config(),
                         lambda: self.hook.vertex_evaluation(optional(self.project_id), self.location))

    def _finish(self, plan, answers, judge=None) -> dict:
        from ..services.evaluation import finish_evaluation

        return finish_evaluation(self.hook.storage(), plan, answers, results_prefix=self.results_prefix,
                                 mode=self.mode, checkpoint_metric=self.checkpoint_metric,
                                 engine=self._engine_config(), judge=judge, make_judge=self._new_judge,
                                 checkpoints_wanted=self._checkpoints_wanted())

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
        self._judge_config()          # an invalid judge configuration fails before any call
        plan = self._plan()
        self.log.info("evaluating %d prompts from %s (%s mode) against %s (temperature %s)", len(plan.prompts),
                      self.prompt_set, self.mode, ", ".join(f"{t.label}={t.model}" for t in plan.targets),
                      plan.settings.temperature)
        if self.mode == "batch":
            return self._start_batch(context, plan)
        return self._finish(plan, *asyncio.run(self._online(plan)))

    async def _online(self, plan):
        """(answers, the judge when it judged each prompt as its answers came in, else None)."""
        from ..services.evaluation import run_online_evaluation

        return await run_online_evaluation(plan, self.tuning_backend, self._engine_config(), self._new_judge)

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
        from ..services.eval_batch import collect_answers

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
        answers = collect_answers(self.hook.vertex_batch(optional(self.project_id), self.location),
                                  self.hook.storage(), state["jobs"], plan)
        return self._finish(plan, answers)
