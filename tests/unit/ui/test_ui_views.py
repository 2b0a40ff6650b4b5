"""The UI page's pure parts: views from runs/XCom, HTML escaping, SVG charts (``services.report.charts``, shared
with the report), the status cache's request bound."""

from __future__ import annotations

import multiprocessing
import re
import threading

import pytest

from gemini_tuning.services.report import charts
from gemini_tuning.services.report.render import chart_svg
from gemini_tuning.ui import pages, views
from gemini_tuning.ui.status_cache import StatusCache

pytestmark = pytest.mark.fast

POINTER = "gs://bkt/pipeline/champion.json"
JOB = "projects/my-project/locations/us-central1/tuningJobs/1"
MODEL = "projects/my-project/locations/us-central1/models/9@1"
OPS = {"prepare_dataset": "PrepareTuningDatasetOperator", "tune": "GeminiTuningOperator",
       "evaluate": "GeminiEvaluateOperator", "gate": "GeminiGateOperator", "promote": "GeminiPromoteOperator",
       "delete": "GeminiDeleteTunedModelOperator", "cleanup_on_failure": "GeminiDeleteTunedModelOperator",
       "report": "GeminiTuningReportOperator"}
GATE = {"decision": "promote", "summary": "promote: all 3 rule(s) passed",
        "rules": [{"name": "min_prompts", "verdict": "pass", "observed": 120, "threshold": 20, "reason": "ok",
                   "details": None},
                  {"name": "champion_margin", "verdict": "pass", "observed": 0.05, "threshold": 0.0,
                   "reason": "<b>margin</b>", "details": {"metric": "rouge_l_f1"}}]}


def run_row(summary: dict) -> str:
    """The overview's table row of one run (``views.run_summary``), as the page writes it."""
    page = pages.overview_page({"pipelines": [{"pointer_uri": POINTER, "dag_ids": [summary["dag_id"]],
                                               "champion": None, "champion_unreadable": None, "history": [],
                                               "runs": [summary]}], "n_runs": 1})
    (row,) = re.findall(r'<tr class="run[" ].*?</tr>', page, flags=re.S)
    return row


def record(run_id="r1", *, tune_state="success", finished=True, evaluated=True, promoted=True) -> views.RunRecord:
    rec = views.RunRecord("gemini_tuning_pipeline", run_id, "success" if finished else "running",
                          run_after=f"2026-12-01T10:00:0{run_id[-1]}", conf={"epochs": 2, "secret_key": "x"})
    for task_id, op in OPS.items():
        rec.tasks[task_id] = {"operator": op, "state": "success" if finished else None, "try_number": 1}
    rec.tasks["tune"]["state"] = tune_state
    rec.tasks["some_other_task"] = {"operator": "PythonOperator", "state": "success", "try_number": 1}
    rec.xcom[("tune", "gemini_tuning_job")] = {"name": JOB, "backend": "vertex", "ref": JOB,
                                               "url": "https://console.cloud.google.com/x"}
    if finished:
        rec.xcom[("tune", "return_value")] = {"name": JOB, "backend": "vertex", "state": "JOB_STATE_SUCCEEDED",
                                              "tuned_model": MODEL, "loss_history": [[1, 1, 2.0], [2, 1, 1.5]],
                                              "checkpoints": [{"checkpoint_id": "1", "epoch": 1, "step": 2}]}
    if evaluated:
        rec.xcom[("evaluate", "return_value")] = {
            "n_prompts": 120, "champion_pointer_uri": POINTER, "results_uri": "gs://bkt/r/results.jsonl",
            "models": {"challenger": "e1", "champion": "e0"},
            "summary": {"challenger": {"metrics": {"normalized_match": 0.9, "rouge_l_f1": 0.8},
                                       "per_tag": {"billing": {"metrics": {"rouge_l_f1": 0.7}}}},
                        "champion": {"metrics": {"normalized_match": 0.8, "rouge_l_f1": 0.75}, "per_tag": {}}}}
        rec.xcom[("gate", "gate")] = GATE
    if promoted:
        rec.xcom[("promote", "return_value")] = {"status": "promoted", "pointer_uri": POINTER,
                                                 "champion": {"tuned_model": MODEL}}
        rec.tasks["delete"]["state"] = rec.tasks["cleanup_on_failure"]["state"] = "skipped"
    return rec


def test_run_view_reads_the_steps_by_operator_class_and_the_gate():
    v = views.run_view(record())
    assert [s["role"] for s in v["steps"]] == ["prepare", "tune", "evaluate", "gate", "promote", "delete", "delete",
                                               "report"]
    assert v["pipeline"] == POINTER and v["primary_metric"] == "rouge_l_f1"
    assert v["tuning"]["source"] == "final" and v["tuning"]["progress_percent"] == 100.0
    assert v["tuning"]["loss"] == [(1.0, 2.0), (2.0, 1.5)]
    assert v["decision"] == {"action": "promoted", "status": "promoted", "model": MODEL}
    assert v["params"] == {"epochs": 2}                 # only the known, harmless params
    assert views.live_job(record()) is None              # finished: never asked again


def test_a_running_job_is_live_until_the_tune_task_finishes():
    rec = record(finished=False, evaluated=False, promoted=False, tune_state="deferred")
    assert views.live_job(rec) == ("vertex", JOB)
    live = {"at": 1.0, "eta_seconds": 42.0, "status": {"name": JOB,
                                                       "state": "JOB_STATE_RUNNING", "progress_percent": 40.0,
                                                       "completed_steps": 4, "total_steps": 10,
                                                       "loss_history": [[1, 1, 2.0]]}}
    t = views.run_view(rec, live)["tuning"]
    assert (t["source"], t["progress_percent"], t["eta_seconds"], t["loss"]) == ("live", 40.0, 42.0, [(1.0, 2.0)])


def test_overview_groups_runs_by_pointer_with_history_newest_first():
    a, b = views.run_view(record("r1")), views.run_view(record("r2", promoted=False))
    b["decision"] = {"action": "deleted", "model": "m2"}
    b["end_date"] = "2026-12-01T11:00:00"
    a["end_date"] = "2026-12-01T10:30:00"
    out = views.overview([a, b], {POINTER: {"backend": "vertex", "tuned_model": MODEL,
                                            "promoted_at": "2026-12-01T10:30:00Z", "run_id": "r1", "dag_id": "d",
                                            "metrics": {"rouge_l_f1": 0.8}}})
    (p,) = out["pipelines"]
    assert p["champion"]["version"] == "1" and [h["action"] for h in p["history"]] == ["deleted", "promoted"]
    assert [r["run_id"] for r in p["runs"]] == ["r2", "r1"] and p["runs"][1]["challenger"] == 0.8


def test_untrusted_text_is_escaped_everywhere():
    v = views.run_view(record())
    v["run_id"] = "<script>alert(1)</script>"
    page = pages.run_page(v, [{"prompt": "<script>alert('x')</script>", "reference": "<i>r</i>",
                               "challenger": "a & b", "champion": None}])
    assert "<script>" not in page and "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page
    assert "&lt;b&gt;margin&lt;/b&gt;" in page and "a &amp; b" in page
    assert len(re.findall(r'<tr class="rule">', page)) == len(GATE["rules"])


def test_active_pages_refresh_themselves_finished_ones_do_not():
    running = views.run_view(record(finished=False, evaluated=False, promoted=False, tune_state="deferred"))
    assert 'http-equiv="refresh"' in pages.run_page(running)
    assert 'http-equiv="refresh"' not in pages.run_page(views.run_view(record()))


def test_svg_charts_draw_what_they_are_given():
    chart = chart_svg(charts.loss_chart([("train loss", [(1, 2.0), (2, 1.0), (3, 0.5)], "#1a73e8"),
                                         ("validation loss", [(3, 0.9)], "#9334e6")],
                                        markers=[charts.Marker(2.0, "ckpt <1>")]))
    assert chart.count('class="series"') == 2 and "ckpt &lt;1&gt;" in chart and "<1>" not in chart
    assert "no points yet" in chart_svg(charts.loss_chart([("train loss", [], "#1a73e8")]))
    bars = chart_svg(charts.bar_chart(["a<b>"], [("challenger", [0.5], "#1a73e8"), ("champion", [None], "#f29900")]))
    assert "a&lt;b&gt;" in bars and "<b>" not in bars
    assert bars.count('class="bar"') == 1 and "n/a" in bars                  # no bar for a missing value
    assert bars.count("<rect") == 4                        # background, 2 legend swatches, one bar
    assert 'aria-valuenow="37.5"' in chart_svg(charts.progress_bar(37.5))


def test_status_cache_asks_once_per_ttl_and_never_for_a_finished_job(tmp_path):
    now = [1000.0]
    calls = []

    def fetch(backend, ref):
        calls.append(ref)
        return {"state": "JOB_STATE_RUNNING" if now[0] < 1100 else "JOB_STATE_SUCCEEDED",
                "progress_percent": (now[0] - 990) / 2}

    cache = StatusCache(tmp_path, fetch, ttl=30, clock=lambda: now[0])
    threads = [threading.Thread(target=cache.get, args=("vertex", "job")) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    now[0] = 1029
    cache.get("vertex", "job")
    assert len(calls) == 1
    now[0] = 1031
    entry = cache.get("vertex", "job")
    assert len(calls) == 2 and entry["eta_seconds"] is not None          # two samples: the rate is known
    now[0] = 1200
    assert cache.get("vertex", "job")["terminal"] is True
    now[0] = 99999
    cache.get("vertex", "job")
    assert len(calls) == 3                                                # finished: never asked again


def _get_in_process(directory, calls_file):
    def fetch(backend, ref):
        with open(calls_file, "a") as f:
            f.write("x")
        return {"state": "JOB_STATE_RUNNING"}

    StatusCache(directory, fetch, ttl=30).get("vertex", "job")


def test_status_cache_bound_holds_across_processes(tmp_path):
    calls = tmp_path / "calls"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_get_in_process, args=(tmp_path / "cache", calls)) for _ in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert calls.read_text() == "x"


def test_a_failed_status_request_is_cached_with_its_error(tmp_path):
    calls = []

    def fetch(backend, ref):
        calls.append(1)
        raise ConnectionError("service down")

    cache = StatusCache(tmp_path, fetch, ttl=30)
    assert "service down" in cache.get("vertex", "j")["error"]
    cache.get("vertex", "j")
    assert len(calls) == 1


def test_a_run_before_its_evaluation_joins_its_dags_pipeline():
    done = views.run_view(record("r1"))
    running = views.run_view(record("r2", finished=False, evaluated=False, promoted=False, tune_state="deferred"))
    other = views.run_view(views.RunRecord("other_dag", "r3", "running", run_after="2026-12-01T12:00:00",
                                           conf={"gcs_prefix": "gs://bkt/other/"},
                                           tasks={"tune": {"operator": "GeminiTuningOperator"}}))
    assert running["pipeline"] == "dag:gemini_tuning_pipeline"
    views.assign_pipelines([done, running, other])
    assert running["pipeline"] == done["pipeline"] == POINTER
    assert other["pipeline"] == "gs://bkt/other/champion.json"


def test_class_attributes_take_no_markup_from_xcom():
    v = views.run_view(record())
    v["gate"] = {**GATE, "decision": 'x"><meta http-equiv="refresh" content="0;url=https://evil.example">'}
    page = pages.run_page(v)
    assert "<meta http-equiv" not in page.split("</head>", 1)[1]
    summary = views.run_summary(v)
    row = run_row(summary)
    assert "<meta" not in row and "evil" not in row.split("class=")[-1].split(">")[0]
    assert '<span class="pill">' in row                     # a decision that is not one gets no class at all


def test_the_report_route_serves_gcs_report_objects_only():
    import pytest

    from gemini_tuning.ui import data

    for bad in ("/opt/airflow/airflow.cfg", "gs://bkt/x/secrets.txt", "file:///etc/passwd", "gs://bkt/report/a.html/../x"):
        with pytest.raises(ValueError, match="not a report in GCS"):
            data.report_html(bad)


def test_the_page_knows_every_gate_decision():
    from gemini_tuning.core.gate import DECISIONS

    assert views.GATE_DECISIONS == DECISIONS and set(views.DECISION_LABELS) == set(DECISIONS)
    rec = record(promoted=False)
    rec.xcom[("gate", "gate")] = {**GATE, "decision": "no_decision", "summary": "no decision: 3 of 120 scored"}
    v = views.run_view(rec)
    assert v["unreadable"] is None and v["gate"]["label"] == "no decision"
    assert 'data-decision="no_decision">no decision</span>' in pages.run_page(v)
    row = run_row(views.run_summary(v))
    assert "no decision" in row and "no decision: 3 of 120 scored" in row


def test_the_run_page_traces_the_decision_to_the_pipeline_file_and_the_verdict():
    """Issue 20: every promotion traced to the reviewed policy it was judged by, on the run page as in the report."""
    rec = record()
    rec.xcom[("gate", "gate")] = {**GATE, "verdict_id": "v-9f1c", "policy_hash": "ab12cd",
                                  "pipeline": {"id": "router", "file": "pipelines/router.yaml", "revision": "77aa01",
                                               "policy_hash": "efe39e"}}
    v = views.run_view(rec)
    assert v["gate"]["provenance"] == [("Pipeline", "router"), ("Pipeline file", "pipelines/router.yaml"),
                                       ("File revision", "77aa01"), ("Pipeline policy", "efe39e"),
                                       ("Verdict", "v-9f1c"), ("Gate policy", "ab12cd")]
    html = pages.run_page(v)
    (line,) = re.findall(r'<p class="small provenance" id="provenance">.*?</p>', html, flags=re.S)
    text = re.sub(r"<[^>]+>", "", line)
    assert "Pipeline router" in text and "File revision 77aa01" in text and "Verdict v-9f1c" in text
    # the open DAG (no pipeline file): only the verdict's part; no verdict at all: no line
    rec.xcom[("gate", "gate")] = {**GATE, "verdict_id": "v-1"}
    assert views.run_view(rec)["gate"]["provenance"] == [("Verdict", "v-1")]
    rec.xcom[("gate", "gate")] = GATE
    assert 'id="provenance"' not in pages.run_page(views.run_view(rec))


def test_the_run_page_shows_the_sub_state_timeline_and_the_services_data_stats():
    rec = record()
    rec.xcom[("tune", "return_value")].update(
        billable_tokens=91234, dropped_count=5, example_count=360,
        substates=[{"state": "TUNING_JOB_STATE_WAITING_FOR_QUOTA", "since": 1796000000.0, "seconds": 1800.0},
                   {"state": "TUNING_JOB_STATE_TUNING", "since": 1796001800.0, "seconds": 600.5}])
    t = views.run_view(rec)["tuning"]
    assert [s["state"] for s in t["substates"]] == ["WAITING_FOR_QUOTA", "TUNING"]
    assert t["substates"][0]["since"].endswith(" UTC") and t["billable_tokens"] == 91234
    html = pages.run_page(views.run_view(rec))
    (table,) = re.findall(r'<table class="substates" id="substates">.*?</table>', html, flags=re.S)
    assert "WAITING_FOR_QUOTA" in table and "1800" in table and "TUNING" in table
    assert "91,234" in html and "5 of 360 example(s)" in html
    rec.xcom[("tune", "return_value")]["substates"] = [{"state": 7}]      # hostile XCom: unreadable, not a 500
    with pytest.raises(views.Unreadable):
        views.tuning_view(rec, None)


def test_the_overview_shows_the_champions_base_model_and_its_retirement():
    from datetime import date

    from gemini_tuning.ui.overview_views import base_model_view

    pointer = {"backend": "vertex", "tuned_model": MODEL, "promoted_at": "2026-12-01T10:30:00Z", "run_id": "r1",
               "dag_id": "d", "metrics": {}, "base_model": "gemini-2.5-flash"}
    base = views.champion_view(pointer)["base"]
    assert base["model"] == "gemini-2.5-flash" and base["retirement"] == "2026-10-20"
    assert base_model_view("gemini-3.5-flash", date(2027, 1, 1))["state"] == "ok"
    assert base_model_view("gemini-3.5-flash", date(2027, 4, 1))["state"] in ("warn", "blocked")
    page = pages.overview_page({"pipelines": [{"pointer_uri": POINTER, "dag_ids": ["d"], "champion":
                                               views.champion_view(pointer), "champion_unreadable": None,
                                               "history": [], "runs": []}], "n_runs": 0})
    (cell,) = re.findall(r'<td class="champion-base">.*?</td>', page, flags=re.S)
    assert "gemini-2.5-flash" in cell and "retires 2026-10-20" in cell and "retired" in cell
    assert views.champion_view({k: v for k, v in pointer.items() if k != "base_model"})["base"] is None
