"""Evaluate the tuned model (and the champion, optionally the base model) on a prompt set; gate the result."""

from __future__ import annotations

import asyncio
import json

from airflow.providers.standard.operators.branch import BaseBranchOperator
from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException

from ..core.generation import GenerationSettings
from ..core.states import FAILURE_STATES


def _read_text_or_file(value: str | None, storage) -> str | None:
    """A system instruction given inline, or as a path / gs:// URI of a text file."""
    from ..backends import gcs

    if not value:
        return None
    if value.startswith("gs://") or (len(value) < 4096 and "\n" not in value and value.endswith(".txt")):
        with gcs.open_source(value, storage) as f:
            return f.read().decode("utf-8").strip()
    return value


class GeminiEvaluateOperator(BaseOperator):
    """Answers every prompt with every model under identical settings; writes one result row per prompt to
    ``{results_prefix}/results.jsonl`` and returns a small manifest (counts add up to the number of prompts).

    ``mode="online"``: async generateContent calls, rate-limited and retried. ``mode="batch"`` (Vertex, for large
    prompt sets): one batch prediction job per model over the prompt set in GCS, each waited for deferred like the
    tuning job, results read from its ``predictions.jsonl``; a prompt missing from the output is an error row.
    """

    template_fields = ("prompt_set", "challenger", "results_prefix", "champion_pointer_uri", "base_model",
                       "system_instruction", "project_id", "location", "temperature", "max_output_tokens", "rpm",
                       "concurrency", "mode", "poll_policy")
    BATCH_XCOM = "gemini_tuning_batch_jobs"

    def __init__(self, *, prompt_set: str, challenger, results_prefix: str, champion_pointer_uri: str | None = None,
                 base_model: str | None = None, system_instruction: str | None = None, temperature=0.0,
                 max_output_tokens=256, concurrency=16, rpm=600, mode: str = "online", project_id: str | None = None,
                 location: str = "us-central1", gcp_conn_id: str = "google_cloud_default", impersonation_chain=None,
                 gemini_api_conn_id: str | None = None, api_base_url: str | None = None,
                 poll_policy: dict | None = None, **kwargs):
        super().__init__(**kwargs)
        self.prompt_set, self.challenger, self.results_prefix = prompt_set, challenger, results_prefix
        self.champion_pointer_uri, self.base_model, self.system_instruction = champion_pointer_uri, base_model, system_instruction
        self.temperature, self.max_output_tokens, self.concurrency, self.rpm = temperature, max_output_tokens, concurrency, rpm
        self.mode, self.project_id, self.location, self.gcp_conn_id = mode, project_id, location, gcp_conn_id
        self.impersonation_chain, self.gemini_api_conn_id, self.api_base_url = impersonation_chain, gemini_api_conn_id, api_base_url
        self.poll_policy = poll_policy

    def hook(self):
        from ..hooks import GeminiTuningHook

        return GeminiTuningHook(gcp_conn_id=self.gcp_conn_id, impersonation_chain=self.impersonation_chain,
                                api_base_url=self.api_base_url, gemini_api_conn_id=self.gemini_api_conn_id)

    def _plan(self, storage):
        """Prompts, targets (label, backend, model ref for online, model ref for batch), settings, champion."""
        from ..backends import gcs
        from ..champion import read_champion
        from ..core.dataset import iter_lines
        from ..core.promptset import parse_prompt_set
        from ..evaluation import Target

        with gcs.open_source(self.prompt_set, storage) as f:
            prompts = parse_prompt_set(iter_lines(f), source_name=self.prompt_set)
        ch = self.challenger or {}
        if not ch.get("tuned_model"):
            raise AirflowException(f"no tuned model to evaluate (challenger={ch!r})")
        targets = [(Target("challenger", ch["backend"], ch.get("endpoint") or ch["tuned_model"]), ch["tuned_model"])]
        champion, generation = (read_champion(storage, self.champion_pointer_uri) if self.champion_pointer_uri
                                else (None, 0))
        if champion and champion.get("tuned_model") != ch["tuned_model"]:
            targets.append((Target("champion", champion["backend"], champion.get("endpoint") or champion["tuned_model"]),
                            champion["tuned_model"]))
        if self.base_model:
            targets.append((Target("base", ch["backend"], self.base_model), self.base_model))
        settings = GenerationSettings(temperature=float(self.temperature), max_output_tokens=int(self.max_output_tokens),
                                      system_instruction=_read_text_or_file(self.system_instruction, storage))
        return prompts, targets, settings, champion, generation

    def execute(self, context):
        hook = self.hook()
        storage = hook.storage()
        prompts, targets, settings, champion, generation = self._plan(storage)
        self.log.info("evaluating %d prompts from %s (%s mode) against %s (temperature %s)", len(prompts),
                      self.prompt_set, self.mode, ", ".join(f"{t.label}={t.model}" for t, _ in targets),
                      settings.temperature)
        if self.mode == "batch":
            return self._start_batch(context, hook, storage, prompts, targets, settings)
        if self.mode != "online":
            raise AirflowException(f"mode must be 'online' or 'batch', got {self.mode!r}")
        from ..evaluation import EngineConfig, run_online

        backends = {t.backend: hook.backend(t.backend, project_id=self.project_id, location=self.location)
                    for t, _ in targets}

        async def generate(target, prompt):
            return await backends[target.backend].agenerate(target.model, prompt.prompt, settings)

        async def evaluate():
            try:
                return await run_online(generate, prompts, [t for t, _ in targets],
                                        EngineConfig(concurrency=int(self.concurrency), rpm=float(self.rpm)))
            finally:
                for backend in backends.values():
                    await backend.aclose()

        return self._finish(storage, prompts, [t for t, _ in targets], asyncio.run(evaluate()), settings,
                            champion, generation)

    # ------------------------------------------------------------------------------------------ batch mode
    def _start_batch(self, context, hook, storage, prompts, targets, settings):
        from ..backends import gcs
        from ..core.identity import identity_key

        if any(t.backend != "vertex" for t, _ in targets):
            raise AirflowException("mode='batch' needs the Vertex backend (batch prediction jobs)")
        ti = context["ti"]
        key = identity_key(ti.dag_id, ti.task_id, ti.run_id, ti.map_index)
        vertex = hook.vertex(self.project_id, self.location)
        prefix = self.results_prefix.rstrip("/")
        jobs = {}
        for target, batch_model in targets:
            display = f"gemini-tuning-eval-{key}-{target.label}"
            live = [j for j in vertex.find_batches(display) if j.state not in FAILURE_STATES]
            if live:                      # a retry: reattach instead of paying for the same batch twice
                jobs[target.label] = live[0].name
                self.log.info("reattaching to batch job %s for %s", live[0].name, target.label)
                continue
            src = f"{prefix}/batch/{target.label}/input.jsonl"
            lines = "".join(json.dumps({"request": {**settings.request_body(p.prompt), "labels": {"prompt_id": p.id}}})
                            + "\n" for p in prompts)
            gcs.write_bytes(storage, src, lines.encode(), "application/jsonl")
            job = vertex.create_batch(batch_model, src, f"{prefix}/batch/{target.label}/output", display)
            self.log.info("created batch job %s for %s (%d prompts)", job.name, target.label, len(prompts))
            jobs[target.label] = job.name
        ti.xcom_push(key=self.BATCH_XCOM, value={"jobs": jobs, "pending": list(jobs)})
        return self._defer_batch(jobs[next(iter(jobs))])

    def _defer_batch(self, name: str):
        from ..core.polling import PollPolicy
        from ..triggers import TuningJobTrigger

        self.defer(trigger=TuningJobTrigger(
            backend="vertex", job_name=name, project_id=self.hook().resolve_project(self.project_id),
            location=self.location, gcp_conn_id=self.gcp_conn_id, impersonation_chain=self.impersonation_chain,
            api_base_url=self.api_base_url, poll=PollPolicy(**(self.poll_policy or {})).to_dict(),
            read_metrics=False), method_name="execute_batch_complete")

    def execute_batch_complete(self, context, event: dict, **_):
        """Resumed after each batch job: defer on the next, or read every job's predictions and finish. (The state
        is in XCom, not in defer kwargs, which ``dag.test()`` drops.)"""
        if event.get("status") != "success":
            raise AirflowException(f"batch job {event.get('job_name')} did not succeed: "
                                   f"{(event.get('job') or {}).get('error_message') or event.get('message')}")
        ti = context["ti"]
        state = ti.xcom_pull(task_ids=self.task_id, key=self.BATCH_XCOM)
        pending = [label for label in state["pending"] if state["jobs"][label] != event["job_name"]]
        if pending:
            ti.xcom_push(key=self.BATCH_XCOM, value={"jobs": state["jobs"], "pending": pending})
            return self._defer_batch(state["jobs"][pending[0]])
        hook = self.hook()
        storage = hook.storage()
        prompts, targets, settings, champion, generation = self._plan(storage)
        vertex = hook.vertex(self.project_id, self.location)
        answers = {t.label: read_predictions(storage, vertex.get(state["jobs"][t.label]).output_uri, prompts)
                   for t, _ in targets}
        return self._finish(storage, prompts, [t for t, _ in targets], answers, settings, champion, generation)

    # ------------------------------------------------------------------------------------------ both modes
    def _finish(self, storage, prompts, targets, answers, settings, champion, generation) -> dict:
        from ..backends import gcs
        from ..core.metrics import score_all, summarize
        from ..evaluation import result_rows

        scores = {label: {s.prompt_id: s for s in score_all(prompts, by_id)} for label, by_id in answers.items()}
        summary = {label: summarize(prompts, by_id) for label, by_id in answers.items()}
        rows = list(result_rows(prompts, answers, scores))
        prefix = self.results_prefix.rstrip("/")
        gcs.write_bytes(storage, f"{prefix}/results.jsonl",
                        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode(), "application/jsonl")
        gcs.write_bytes(storage, f"{prefix}/summary.json", json.dumps(summary, indent=1).encode(), "application/json")
        counts = {}
        for t in targets:
            statuses = [r["models"][t.label]["status"] for r in rows]
            counts[t.label] = {s: statuses.count(s) for s in ("answered", "error", "missing")}
            assert sum(counts[t.label].values()) == len(prompts)
            m = summary[t.label]["metrics"]
            self.log.info("%s: %d answered, %d errors; normalized_match=%s rouge_l_f1=%s", t.label,
                          counts[t.label]["answered"], counts[t.label]["error"], m.get("normalized_match"),
                          m.get("rouge_l_f1"))
        return {"results_uri": f"{prefix}/results.jsonl", "n_prompts": len(prompts), "rows": len(rows),
                "counts": counts, "summary": summary, "models": {t.label: t.model for t in targets},
                "champion": champion, "champion_generation": generation, "settings": settings.to_dict(),
                "mode": self.mode}


def read_predictions(storage, output_dir: str, prompts) -> dict:
    """A batch job's ``predictions.jsonl`` rows -> {prompt id: Answer}; every prompt gets one (missing = error)."""
    from ..backends import gcs
    from ..core.generation import response_text
    from ..core.metrics import Answer

    bucket, prefix = gcs.parse_gs_uri(output_dir)
    answers = {}
    for blob in storage.list_blobs(bucket, prefix=prefix.rstrip("/") + "/"):
        if not blob.name.endswith("predictions.jsonl"):
            continue
        for row in gcs.read_jsonl(storage, gcs.gs_uri(bucket, blob.name), max_bytes=1 << 30):
            pid = ((row.get("request") or {}).get("labels") or {}).get("prompt_id")
            if pid is None:
                continue
            if row.get("response") is not None:
                answers[pid] = Answer(pid, response_text(row["response"]), None, None)
            else:
                answers[pid] = Answer(pid, None, f"batch prediction failed: {row.get('status')}", None)
    return {p.id: answers.get(p.id) or Answer(p.id, None, "no prediction returned for this prompt", None)
            for p in prompts}


class GeminiGateOperator(BaseBranchOperator):
    """Applies the promotion gate (``core.gate.decide``) to the evaluation and follows ``promote_task_id`` or
    ``delete_task_id``. The decision with every rule's value and verdict goes to XCom (key ``gate``) and to
    ``gate.json`` beside the results."""

    template_fields = ("evaluation", "gate_config")

    def __init__(self, *, evaluation, gate_config: dict | None = None, promote_task_id: str = "promote",
                 delete_task_id: str = "delete", gcp_conn_id: str = "google_cloud_default", impersonation_chain=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.evaluation, self.gate_config = evaluation, gate_config or {}
        self.promote_task_id, self.delete_task_id = promote_task_id, delete_task_id
        self.gcp_conn_id, self.impersonation_chain = gcp_conn_id, impersonation_chain

    def choose_branch(self, context):
        from ..backends import gcs
        from ..core.gate import GateConfig, decide
        from ..core.metrics import ExampleScores
        from ..hooks import GeminiTuningHook

        storage = GeminiTuningHook(gcp_conn_id=self.gcp_conn_id, impersonation_chain=self.impersonation_chain).storage()
        ev = self.evaluation
        rows = gcs.read_jsonl(storage, ev["results_uri"], max_bytes=512 * 1024 * 1024)

        def scores(label):
            return [ExampleScores(r["prompt_id"], r["models"][label]["scores"], r["models"][label]["error"]
                                  if r["models"][label]["status"] != "answered" else None) for r in rows]

        has_champion = "champion" in ev["models"]
        decision = decide(scores("challenger"), scores("champion") if has_champion else None,
                          GateConfig.from_dict(self.gate_config), challenger_summary=ev["summary"]["challenger"],
                          champion_summary=ev["summary"].get("champion"))
        for rule in decision.rules:
            self.log.info("gate %-28s %-7s observed=%s threshold=%s — %s", rule.name, rule.verdict.upper(),
                          rule.observed, rule.threshold, rule.reason)
        self.log.info("gate decision: %s — %s", decision.decision.upper(), decision.summary)
        out = decision.to_dict()
        gcs.write_bytes(storage, ev["results_uri"].rsplit("/", 1)[0] + "/gate.json",
                        json.dumps(out, indent=1, default=str).encode(), "application/json")
        context["ti"].xcom_push(key="gate", value=out)
        return self.promote_task_id if decision.promote else self.delete_task_id
