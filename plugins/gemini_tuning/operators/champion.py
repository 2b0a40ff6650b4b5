"""Promote the tuned model to champion, or delete it; and the per-run HTML report."""

from __future__ import annotations

import json

from airflow.sdk import Asset, BaseOperator, BaseOperatorLink
from airflow.sdk.exceptions import AirflowException, AirflowSkipException
from airflow.sdk.execution_time.xcom import XCom

CHAMPION_ASSET = Asset(name="gemini_tuning_champion")


class _GoogleOperator(BaseOperator):
    """Connection plumbing shared by the operators below."""

    def __init__(self, *, project_id: str | None = None, location: str = "us-central1",
                 gcp_conn_id: str = "google_cloud_default", impersonation_chain=None,
                 gemini_api_conn_id: str | None = None, api_base_url: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.project_id, self.location, self.gcp_conn_id = project_id, location, gcp_conn_id
        self.impersonation_chain, self.gemini_api_conn_id, self.api_base_url = impersonation_chain, gemini_api_conn_id, api_base_url

    def hook(self):
        from ..hooks import GeminiTuningHook

        return GeminiTuningHook(gcp_conn_id=self.gcp_conn_id, impersonation_chain=self.impersonation_chain,
                                api_base_url=self.api_base_url, gemini_api_conn_id=self.gemini_api_conn_id)


class GeminiPromoteOperator(_GoogleOperator):
    """Makes the tuned model the champion: GCS pointer first (compare-and-swap on the generation the evaluation
    saw), then the Vertex alias and labels. Emits an Asset event for the champion."""

    template_fields = ("candidate", "evaluation", "pointer_uri", "project_id", "location")

    def __init__(self, *, candidate, evaluation, pointer_uri: str, alias: str = "champion", **kwargs):
        kwargs.setdefault("outlets", [CHAMPION_ASSET])
        super().__init__(**kwargs)
        self.candidate, self.evaluation, self.pointer_uri, self.alias = candidate, evaluation, pointer_uri, alias

    def execute(self, context):
        from ..champion import ChampionChanged, promote

        hook = self.hook()
        cand = self.candidate
        registry = hook.registry(self.project_id, self.location) if cand["backend"] == "vertex" else None
        metrics = (self.evaluation.get("summary") or {}).get("challenger", {}).get("metrics")
        run = {"dag_id": context["ti"].dag_id, "run_id": context["ti"].run_id, "metrics": metrics}
        try:
            pointer = promote(hook.storage(), self.pointer_uri, cand,
                              expected_generation=int(self.evaluation.get("champion_generation") or 0),
                              registry=registry, run=run, alias=self.alias)
        except ChampionChanged as exc:
            raise AirflowException(str(exc)) from exc
        self.log.info("promoted %s to champion (pointer %s)", cand["tuned_model"], self.pointer_uri)
        context["outlet_events"][CHAMPION_ASSET].extra = {"tuned_model": cand["tuned_model"],
                                                          "endpoint": cand.get("endpoint"),
                                                          "pointer_uri": self.pointer_uri}
        return pointer


class GeminiDeleteTunedModelOperator(_GoogleOperator):
    """Deletes the tuned model (Vertex: undeploy, delete its endpoint and the model; Gemini API: tunedModels.delete).
    Idempotent; refuses the current champion. With no candidate (tuning never produced one) it skips."""

    template_fields = ("candidate", "pointer_uri", "project_id", "location")

    def __init__(self, *, candidate, pointer_uri: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.candidate, self.pointer_uri = candidate, pointer_uri

    def execute(self, context):
        from ..champion import delete_candidate

        cand = self.candidate
        if not cand or not cand.get("tuned_model"):
            raise AirflowSkipException("no tuned model to delete")
        hook = self.hook()
        result = delete_candidate(
            cand, storage_client=hook.storage(), pointer_uri=self.pointer_uri,
            registry=hook.registry(self.project_id, self.location) if cand["backend"] == "vertex" else None,
            gemini_api=hook.gemini_api(self.project_id) if cand["backend"] == "gemini_api" else None)
        self.log.info("deleted %s: %s", cand["tuned_model"], result)
        return result


class ReportLink(BaseOperatorLink):
    name = "Report"

    def get_link(self, operator, *, ti_key) -> str:
        value = XCom.get_value(key="return_value", ti_key=ti_key)
        return (value or {}).get("url", "") if isinstance(value, dict) else ""


class GeminiTuningReportOperator(_GoogleOperator):
    """Renders the run's HTML report (loss curve, challenger vs champion, gate verdicts, per-tag breakdown,
    differing examples) and stores it in GCS next to the evaluation results."""

    template_fields = ("tuning", "evaluation", "gate", "report_uri", "decision_task_ids")
    operator_extra_links = (ReportLink(),)

    def __init__(self, *, tuning, evaluation, gate, report_uri: str, decision_task_ids=("promote", "delete"),
                 max_examples: int = 100, **kwargs):
        super().__init__(**kwargs)
        self.tuning, self.evaluation, self.gate, self.report_uri = tuning, evaluation, gate, report_uri
        self.decision_task_ids, self.max_examples = decision_task_ids, max_examples

    def execute(self, context):
        from ..backends import gcs
        from ..report import render_report

        storage = self.hook().storage()
        ev, gate, tuning = self.evaluation or {}, self.gate or {}, self.tuning or {}
        rows = gcs.read_jsonl(storage, ev["results_uri"], max_bytes=512 * 1024 * 1024) if ev.get("results_uri") else []
        examples = []
        for r in rows:
            ch, cp = r["models"].get("challenger", {}), r["models"].get("champion")
            if cp is None or ch.get("answer") != cp.get("answer"):
                pick = (lambda m: (m or {}).get("scores") or {})
                metric = r.get("metric") or "normalized_match"
                examples.append({"prompt_id": r["prompt_id"], "prompt": r["prompt"], "reference": r["reference"],
                                 "tags": r["tags"], "challenger": ch.get("answer"), "champion": (cp or {}).get("answer"),
                                 "challenger_score": pick(ch).get(metric), "champion_score": pick(cp).get(metric),
                                 "challenger_error": ch.get("error"), "champion_error": (cp or {}).get("error")})
        ti = context["ti"]
        action = None
        for task_id in self.decision_task_ids:
            result = ti.xcom_pull(task_ids=task_id)
            if result is not None:
                action = f"{task_id}: {json.dumps(result, default=str)[:300]}"
        data = {"title": f"Gemini tuning report — {ti.dag_id}", "dag_id": ti.dag_id, "run_id": ti.run_id,
                "generated_at": context["ts"] if "ts" in context else None,
                "tuning": {"backend": tuning.get("backend"), "job_name": tuning.get("name"),
                           "tuned_model": tuning.get("tuned_model"), "endpoint": tuning.get("endpoint"),
                           "loss_history": tuning.get("loss_history") or [], "example_count": tuning.get("example_count")},
                "evaluation": {"n_prompts": ev.get("n_prompts"), "results_uri": ev.get("results_uri"),
                               "models": ev.get("models", {}), "summary": {"challenger": ev.get("summary", {}).get("challenger"),
                                                                           "champion": ev.get("summary", {}).get("champion")}},
                "gate": gate, "decision": gate.get("decision"), "action_taken": action,
                "examples": examples}
        html = render_report(data)
        gcs.write_bytes(storage, self.report_uri, html.encode("utf-8"), "text/html; charset=utf-8")
        url = gcs.browser_url(self.report_uri)
        self.log.info("report: %s (%s)", self.report_uri, url)
        return {"report_uri": self.report_uri, "url": url, "decision": gate.get("decision")}
