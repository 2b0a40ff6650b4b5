"""Evaluate the tuned model (and the champion, optionally the base model) on a prompt set; gate the result."""

from __future__ import annotations

import asyncio
import json

from airflow.providers.standard.operators.branch import BaseBranchOperator
from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException

from ..core.generation import GenerationSettings


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
    ``{results_prefix}/results.jsonl`` and returns a small manifest (counts add up to the number of prompts)."""

    template_fields = ("prompt_set", "challenger", "results_prefix", "champion_pointer_uri", "base_model",
                       "system_instruction", "project_id", "location", "temperature", "max_output_tokens", "rpm",
                       "concurrency")

    def __init__(self, *, prompt_set: str, challenger, results_prefix: str, champion_pointer_uri: str | None = None,
                 base_model: str | None = None, system_instruction: str | None = None, temperature=0.0,
                 max_output_tokens=256, concurrency=16, rpm=600, project_id: str | None = None,
                 location: str = "us-central1", gcp_conn_id: str = "google_cloud_default", impersonation_chain=None,
                 gemini_api_conn_id: str | None = None, api_base_url: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.prompt_set, self.challenger, self.results_prefix = prompt_set, challenger, results_prefix
        self.champion_pointer_uri, self.base_model, self.system_instruction = champion_pointer_uri, base_model, system_instruction
        self.temperature, self.max_output_tokens, self.concurrency, self.rpm = temperature, max_output_tokens, concurrency, rpm
        self.project_id, self.location, self.gcp_conn_id = project_id, location, gcp_conn_id
        self.impersonation_chain, self.gemini_api_conn_id, self.api_base_url = impersonation_chain, gemini_api_conn_id, api_base_url

    def hook(self):
        from ..hooks import GeminiTuningHook

        return GeminiTuningHook(gcp_conn_id=self.gcp_conn_id, impersonation_chain=self.impersonation_chain,
                                api_base_url=self.api_base_url, gemini_api_conn_id=self.gemini_api_conn_id)

    def execute(self, context):
        from ..backends import gcs
        from ..champion import read_champion
        from ..core.dataset import iter_lines
        from ..core.metrics import score_all, summarize
        from ..core.promptset import parse_prompt_set
        from ..evaluation import EngineConfig, Target, result_rows, run_online

        hook = self.hook()
        storage = hook.storage()
        with gcs.open_source(self.prompt_set, storage) as f:
            prompts = parse_prompt_set(iter_lines(f), source_name=self.prompt_set)
        ch = self.challenger or {}
        if not ch.get("tuned_model"):
            raise AirflowException(f"no tuned model to evaluate (challenger={ch!r})")
        targets = [Target("challenger", ch["backend"], ch.get("endpoint") or ch["tuned_model"])]
        champion, generation = (read_champion(storage, self.champion_pointer_uri) if self.champion_pointer_uri
                                else (None, 0))
        if champion and champion.get("tuned_model") != ch["tuned_model"]:
            targets.append(Target("champion", champion["backend"], champion.get("endpoint") or champion["tuned_model"]))
        if self.base_model:
            targets.append(Target("base", ch["backend"], self.base_model))
        settings = GenerationSettings(temperature=float(self.temperature), max_output_tokens=int(self.max_output_tokens),
                                      system_instruction=_read_text_or_file(self.system_instruction, storage))
        backends = {t.backend: hook.backend(t.backend, project_id=self.project_id, location=self.location)
                    for t in targets}
        self.log.info("evaluating %d prompts from %s against %s (temperature %s, %s rpm, concurrency %s)",
                      len(prompts), self.prompt_set, ", ".join(f"{t.label}={t.model}" for t in targets),
                      settings.temperature, self.rpm, self.concurrency)

        async def generate(target, prompt):
            return await backends[target.backend].agenerate(target.model, prompt.prompt, settings)

        async def evaluate():
            try:
                return await run_online(generate, prompts, targets,
                                        EngineConfig(concurrency=int(self.concurrency), rpm=float(self.rpm)))
            finally:
                for backend in backends.values():
                    await backend.aclose()

        answers = asyncio.run(evaluate())
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
                "champion": champion, "champion_generation": generation, "settings": settings.to_dict()}


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
