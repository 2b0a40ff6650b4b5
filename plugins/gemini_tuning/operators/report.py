"""The run's HTML report, stored in GCS beside the evaluation results and linked from the task."""

from __future__ import annotations

import json

from ..links import ReportLink
from .base import GeminiBaseOperator


class GeminiTuningReportOperator(GeminiBaseOperator):
    """Renders the run's HTML report (loss curve, challenger vs champion, gate verdicts, per-tag breakdown,
    differing examples; ``services.reporting``) and stores it at ``report_uri``. Returns ``{report_uri, url,
    decision}``; the "Report" extra link opens ``url``.

    :param tuning: the tuning task's result (templated).
    :param evaluation: the evaluation task's manifest (templated).
    :param gate: the gate's decision (XCom key ``gate``) (templated).
    :param report_uri: ``gs://`` URI of the HTML file (templated).
    :param decision_task_ids: the tasks whose result says what was done (promoted / deleted) (templated).
    :param dataset: the prepare task's result (templated), or None: its token estimate is shown beside the
        service's count, and its line map names the examples the service dropped by their source lines.

    And the connection arguments of :class:`~gemini_tuning.operators.base.GeminiBaseOperator`.
    """

    template_fields = ("tuning", "evaluation", "gate", "report_uri", "decision_task_ids", "dataset")
    operator_extra_links = (ReportLink(),)

    def __init__(self, *, tuning, evaluation, gate, report_uri: str, decision_task_ids=("promote", "delete"),
                 dataset=None, **kwargs):
        super().__init__(**kwargs)
        self.dataset = dataset
        self.tuning = tuning
        self.evaluation = evaluation
        self.gate = gate
        self.report_uri = report_uri
        self.decision_task_ids = decision_task_ids

    def execute(self, context):
        from ..services.eval_results import differing_examples, read_rows
        from ..services.prepare import read_line_map
        from ..services.reporting import report_data, write_report

        storage = self.hook.storage()
        ev = self.evaluation if isinstance(self.evaluation, dict) else {}
        gate = self.gate if isinstance(self.gate, dict) else {}
        if not gate:
            gate = {"decision": "no verdict", "summary": self._why_no_verdict(context)}
        rows = read_rows(storage, ev["results_uri"]) if ev.get("results_uri") else []
        ti = context["ti"]
        action = None
        for task_id in self.decision_task_ids:
            result = ti.xcom_pull(task_ids=task_id)
            if result is not None:
                action = f"{task_id}: {json.dumps(result, default=str)[:300]}"
        tuning = self.tuning if isinstance(self.tuning, dict) else {}
        dataset = self.dataset if isinstance(self.dataset, dict) else {}
        dropped = [i for i, _ in tuning.get("dropped") or ()]
        try:
            lines = read_line_map(storage, dataset.get("train_lines_uri"), dropped) if dropped else {}
        except Exception as exc:  # noqa: BLE001 - the report is still written, with the service's indices
            self.log.warning("the training line map could not be read (%s); dropped examples are listed by their "
                             "index in the uploaded file", exc)
            lines = {}
        data = report_data(dag_id=ti.dag_id, run_id=ti.run_id, generated_at=context.get("ts"),
                           tuning=tuning, evaluation=ev, gate=gate, action_taken=action,
                           examples=differing_examples(rows), dataset=dataset, dropped_lines=lines)
        url = write_report(storage, self.report_uri, data)
        self.log.info("report: %s (%s)", self.report_uri, url)
        return {"report_uri": self.report_uri, "url": url, "decision": gate.get("decision")}

    @staticmethod
    def _why_no_verdict(context) -> str:
        """The run's failed tasks, for a report written before (or without) the gate's decision."""
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

        ti = context["ti"]
        try:
            found = RuntimeTaskInstance.get_task_states(dag_id=ti.dag_id, run_ids=[ti.run_id])
            tasks = (found or {}).get(ti.run_id) or {}
        except Exception as exc:  # noqa: BLE001 - the report is still written
            return f"the gate has not decided in this run (task states unreadable: {exc})"
        failed = sorted(t for t, s in tasks.items() if str(s).endswith("failed") and not str(s).endswith(
            "upstream_failed"))
        return ("the gate has not decided in this run" + (f": {', '.join(failed)} failed" if failed else "")
                + "; nothing was promoted, and a tuned model (if any) is kept for a rerun")
