"""The per-run HTML report: content, escaping, charts as inline SVG (no matplotlib), graceful degradation."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from html.parser import HTMLParser

import pytest

from gemini_tuning.services import reporting as report
from gemini_tuning.services.report.examples import classify
from gemini_tuning.services.reporting import MAX_EXAMPLE_ROWS, render_report
from harness.page_text import x_tick_labels
from harness.paths import PLUGINS, ROOT, TESTS
from harness.report_data import MALICIOUS, build_data

pytestmark = pytest.mark.fast

CHART_RE = re.compile(r'<svg class="chart[^"]*" role="img" aria-label="([^"]*)" width="(\d+)" height="(\d+)"'
                      r'.*?</svg>', re.S)


@pytest.fixture(scope="module")
def full():
    return build_data()


@pytest.fixture(scope="module")
def full_html(full):
    return render_report(full)


# ------------------------------------------------------------------------------------------ checks

class _Checker(HTMLParser):
    VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track",
                      "wbr"})

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.starts: dict[str, int] = {}
        self.ends: dict[str, int] = {}
        self.imgs: list[dict] = []
        self.text: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag, attrs):
        self.starts[tag] = self.starts.get(tag, 0) + 1
        if tag == "script":
            self.scripts += 1
        if tag == "img":
            self.imgs.append(dict(attrs))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        self.ends[tag] = self.ends.get(tag, 0) + 1
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1] if self.stack else 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def parse(page: str) -> _Checker:
    c = _Checker()
    c.feed(page)
    c.close()
    assert c.errors == [], c.errors[:5]
    assert c.stack == [], f"unclosed: {c.stack}"
    for tag in ("table", "tr", "td", "section", "div", "html", "body"):
        assert c.starts.get(tag, 0) == c.ends.get(tag, 0), tag
    return c


def charts(page: str) -> list[str]:
    """The inline SVG charts of a page (each a whole ``<svg>`` element)."""
    return [m.group(0) for m in CHART_RE.finditer(page)]


def chart_size(svg: str) -> tuple[int, int]:
    m = CHART_RE.match(svg)
    return int(m.group(2)), int(m.group(3))


# ------------------------------------------------------------------------------------------ tests

def test_full_report_structure(full, full_html):
    page = full_html
    assert page.startswith("<!DOCTYPE html>")
    c = parse(page)
    assert c.scripts == 0
    assert "<link" not in page and "http://" not in page and "https://" not in page  # no external assets
    # loss curve, metrics bars, per-tag bars (9 tags <= 20): inline SVG, no image at all
    drawn = charts(page)
    assert len(drawn) == 3 == c.starts["svg"] and c.imgs == [] and "data:image" not in page
    assert [CHART_RE.match(x).group(1) for x in drawn] == ["Training loss by step", "Metrics, challenger vs champion",
                                                          "normalized match per tag"]
    for svg in drawn:
        w, h = chart_size(svg)
        assert 300 <= w <= 1400 and 150 <= h <= 1400, (w, h)
        assert sum(svg.count(t) for t in ("<path", "<rect", "<circle")) > 10       # they draw something
    # tables: rules, tuning kv, evaluation kv, metrics, per-tag, examples
    assert c.starts["table"] == 6
    text = " ".join(c.text)
    for name in ("min_prompts", "max_error_rate", "threshold:normalized_match", "threshold:macro_f1",
                 "champion_min_pairs", "champion_margin", "champion_significance"):
        assert name in text
    for r in full["gate"]["rules"]:
        assert r["name"] in text
    assert full["gate"]["summary"] in text
    assert full["action_taken"] in text
    assert "Tuning loss" in text and "Per-tag breakdown" in text and "Examples where the models differ" in text
    for tag in ("billing", "shipping", "technical", "account", "refund", "other", "easy", "hard", "ambiguous"):
        assert f"<td>{tag}</td>" in page
    assert "macro F1" in text and "latency p95" in text and "error rate" in text


@pytest.mark.parametrize("decision,colour_class", [("promote", "decision promote"), ("delete", "decision delete")])
def test_decision_banner(full, decision, colour_class):
    data = dict(full, decision=decision, action_taken=f"action for {decision}")
    page = render_report(data)
    parse(page)
    assert f'class="{colour_class}"' in page
    assert f'<div class="decision-word">{decision.upper()}</div>' in page
    assert f"action for {decision}" in page
    other = "delete" if decision == "promote" else "promote"
    assert f'class="decision {other}"' not in page


def test_rule_verdicts_coloured(full_html, full):
    verdicts = [r["verdict"] for r in full["gate"]["rules"]]
    for v in set(verdicts):
        assert page_count(full_html, f'<span class="badge {v}">{v}</span>') == verdicts.count(v)


def page_count(page: str, s: str) -> int:
    return page.count(s)


def test_minimal_data():
    page = render_report({"title": "t", "run_id": "r"})
    c = parse(page)
    assert charts(page) == [] and c.imgs == [] and "<svg" not in page
    assert "UNKNOWN" in page
    assert "No loss history" in page and "No evaluation summary" in page
    assert "No gate rules" in page and "No examples" in page


def test_no_champion_no_loss_no_examples():
    data = build_data(champion=False, n_prompts=40)
    assert data["gate"]["decision"] == "promote"
    data["tuning"].update(loss_history=[], backend="gemini_api", endpoint=None, job_name="tunedModels/abc")
    data["evaluation"]["models"]["challenger"] = "tunedModels/abc"
    data["examples"] = []
    page = render_report(data)
    c = parse(page)
    assert len(charts(page)) == 2  # metrics + per tag; no loss curve
    text = " ".join(c.text)
    assert "No loss history" in text
    assert "Gemini API" in text
    assert "none (first model: no comparison)" in text
    assert "skipped (no champion)" in text
    assert "Champion" in text and "champion answer" not in text.lower()
    assert "No examples were recorded" in text
    assert "PROMOTE" in text
    # champion columns absent from the metric table
    assert "Metrics: challenger (no champion)" in text


def test_no_champion_shows_challenger_mistakes():
    data = build_data(champion=False, n_prompts=60)
    page = render_report(data)
    parse(page)
    wrong = [x for x in data["examples"] if x["challenger_error"] or (x["challenger_score"] or 0) < 1]
    assert wrong, "fixture should contain some mistakes"
    assert "Examples the challenger got wrong" in page
    assert f"{len(wrong)} of 60 example(s)" in page
    assert "<th>Champion answer</th>" not in page


def test_malicious_strings_are_escaped():
    data = build_data(malicious=True, n_prompts=40)
    data["title"] = MALICIOUS
    data["gate"]["rules"][0]["reason"] = MALICIOUS
    data["tuning"]["hyperparameters"]["<script>x</script>"] = MALICIOUS
    data["evaluation"]["summary"]["challenger"]["per_tag"]["$\\frac{a}{$"] = \
        data["evaluation"]["summary"]["challenger"]["per_tag"]["billing"]  # mathtext-hostile tag
    page = render_report(data)
    c = parse(page)
    assert "<script" not in page.lower() and c.scripts == 0
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(2)&gt;" in page
    assert "<b>tag</b>" not in page and "&lt;b&gt;tag&lt;/b&gt;" in page
    assert "&amp; &#34;quotes&#34;" in page
    # the malicious prompt is shown (it differs) and its text round-trips through the parser as plain text
    assert any(MALICIOUS in t for t in c.text)
    # in the SVG charts too: the per-tag chart names every tag, as text
    (tag_chart,) = [x for x in charts(page) if "per tag" in CHART_RE.match(x).group(1)]
    assert "&lt;b&gt;tag&lt;/b&gt;" in tag_chart and "<b>" not in tag_chart and "$\\frac{a}{$" in tag_chart
    assert c.imgs == []


def test_example_rows_capped_with_note(full):
    data = dict(full)
    base = full["examples"][0]
    data["examples"] = [dict(base, prompt_id=f"x{i}", challenger="billing", champion="refund",
                             challenger_score=float(i % 2), champion_score=float(1 - i % 2),
                             challenger_error=None, champion_error=None) for i in range(MAX_EXAMPLE_ROWS + 37)]
    page = render_report(data)
    parse(page)
    body = page.split('<table class="grid examples">', 1)[1].split("</table>", 1)[0]
    assert body.count("<tr>") == MAX_EXAMPLE_ROWS + 1  # + header row
    assert "and 37 more example(s) not shown" in page
    assert full["evaluation"]["results_uri"] in page
    # regressions (champion better) come first
    first_row = body.split("<tbody>", 1)[1].split("</tr>", 1)[0]
    assert "champion better" in first_row


def test_only_differing_examples_listed(full):
    ex = full["examples"]
    same = [x for x in ex if x["challenger"] == x["champion"] and not x["challenger_error"] and not x["champion_error"]]
    assert same
    page = render_report(full)
    body = page.split('<table class="grid examples">', 1)[1].split("</table>", 1)[0]
    n_rows = body.count("<tr>") - 1
    differ = [x for x in ex if classify(x) is not None]
    assert n_rows == min(len(differ), MAX_EXAMPLE_ROWS)
    assert len(differ) < len(ex)
    for x in same[:5]:
        assert f'<div class="pid">{x["prompt_id"]}</div>' not in body


def test_long_texts_truncated(full):
    data = dict(full, examples=[dict(full["examples"][0], challenger="a" * 5000, champion="b",
                                     challenger_error=None, champion_error=None)])
    page = render_report(data)
    parse(page)
    assert "a" * report.MAX_TEXT_CHARS in page and "a" * (report.MAX_TEXT_CHARS + 1) not in page
    assert f"{5000 - report.MAX_TEXT_CHARS} more characters" in page


def test_many_tags_table_without_chart(full):
    data = json.loads(json.dumps(full))
    for side in ("challenger", "champion"):
        pt = data["evaluation"]["summary"][side]["per_tag"]
        base = pt["billing"]
        for i in range(25):
            pt[f"tag{i:02d}"] = base
    page = render_report(data)
    parse(page)
    assert len(charts(page)) == 2  # loss + metrics, no per-tag chart
    assert "more than 20, so no chart" in page
    assert "<td>tag24</td>" in page


def test_loss_history_variants(full):
    data = json.loads(json.dumps(full))
    # unknown epochs, junk rows, dict rows, unsorted
    data["tuning"]["loss_history"] = [[3, None, 1.0], [1, None, 2.0], ["x", 1, 3.0], [2, None, None],
                                      {"step": 2, "epoch": None, "loss": 1.5}, [4, None, float("nan")]]
    page = render_report(data)
    parse(page)
    assert len(charts(page)) == 3
    assert "3 point(s), steps 1–3" in page
    assert "epoch(s)" not in page
    data["tuning"]["loss_history"] = [[5, 1, 0.7]]  # a single point still plots
    assert len(charts(render_report(data))) == 3


def test_weird_values_do_not_break(full):
    data = json.loads(json.dumps(full))
    data["gate"]["rules"].append({"name": "custom", "verdict": "odd", "observed": {"a": [1, 2]},
                                  "threshold": float("inf"), "reason": None, "details": None})
    data["evaluation"]["summary"]["champion"]["metrics"]["contains"] = None
    data["examples"].append({"prompt": None})
    data["decision"] = None
    page = render_report(data)
    parse(page)
    assert "custom" in page and full["gate"]["decision"].upper() in page


def test_report_is_deterministic(full, full_html):
    assert render_report(full) == full_html


def test_checkpoints_are_scored_beside_the_loss_curve(full):
    data = json.loads(json.dumps(full))
    data["tuning"]["checkpoints"] = [{"checkpoint_id": str(k), "epoch": k, "step": 15 * k,
                                      "endpoint": f"projects/p/locations/us-central1/endpoints/{k}"} for k in (1, 2, 3)]
    data["tuning"]["continued_from"] = "projects/p/locations/us-central1/models/9@1 checkpoint 2"
    data["evaluation"]["best_checkpoint"] = {
        "checkpoint_id": "2", "metric": "normalized_match", "score": 0.81,
        "scores": [{"checkpoint_id": "1", "score": 0.74}, {"checkpoint_id": "2", "score": 0.81},
                   {"checkpoint_id": "3", "score": 0.69}]}
    page = render_report(data)
    text = " ".join(parse(page).text)
    assert "Checkpoints" in text and "checkpoint 2 scored best by normalized match" in text
    rows = re.findall(r"<tr><td>checkpoint (\d)</td>.*?</tr>", page)
    assert rows == ["1", "2", "3"]
    assert page.count("best: gated, promoted if it wins") == 1 and "0.740" in page and "0.690" in page
    assert "dashed lines mark checkpoints (green: the one evaluated best)" in text
    assert "Continued from" in text and "models/9@1 checkpoint 2" in page
    plain = render_report(full)                               # no checkpoints: no section, no markers
    assert "Checkpoints</h2>" not in plain and "dashed lines" not in plain


def test_validation_loss_is_plotted_and_described_beside_the_training_loss(full):
    data = json.loads(json.dumps(full))
    data["tuning"]["validation_history"] = [[15, 1, 1.2], [30, 2, 0.61], [45, 3, 0.74]]
    data["tuning"]["checkpoints"] = [{"checkpoint_id": str(k), "epoch": k, "step": 15 * k} for k in (1, 2, 3)]
    page = render_report(data)
    text = " ".join(parse(page).text)
    assert "validation loss (3 point(s)): first 1.2, final 0.74, minimum 0.61 at step 30" in text
    assert 'aria-label="Training and validation loss by step"' in page
    assert "dashed lines mark checkpoints" in text                       # the checkpoint markers stay
    without = json.loads(json.dumps(data))
    without["tuning"]["validation_history"] = []
    plain = render_report(without)
    assert "validation loss" not in plain and 'aria-label="Training loss by step"' in plain
    assert charts(page)[0].count('class="series"') == 2 and charts(plain)[0].count('class="series"') == 1
    assert charts(page)[0] != charts(plain)[0]                            # the plot really draws the series
    # only a validation series (no training loss reported): still a plot, and it says so
    data["tuning"]["loss_history"] = []
    page = render_report(data)
    assert "no training loss was reported" in page and 'aria-label="Training and validation loss by step"' in page
    assert charts(page)[0].count('class="series"') == 1


def test_report_data_passes_the_validation_history():
    tuning = {"name": "tuningJobs/1", "loss_history": [[1, 1, 2.0]], "validation_history": [[1, 1, 2.5]]}
    kw = dict(dag_id="d", run_id="r", generated_at=None, evaluation={}, gate={}, action_taken=None, examples=[])
    assert report.report_data(tuning=tuning, **kw)["tuning"]["validation_history"] == [[1, 1, 2.5]]
    assert report.report_data(tuning={"name": "tuningJobs/1"}, **kw)["tuning"]["validation_history"] == []


def test_the_loss_chart_has_integer_step_ticks_and_marks_the_checkpoints(full):
    """Defect: the loss chart's x-axis ticks fell on fractional steps (8.8, 16.6, ...): integer steps only."""
    data = json.loads(json.dumps(full))
    data["tuning"]["checkpoints"] = [{"checkpoint_id": str(k), "epoch": k, "step": 15 * k} for k in (1, 2, 3)]
    data["evaluation"]["best_checkpoint"] = {"checkpoint_id": "2", "metric": "normalized_match", "score": 0.81,
                                             "scores": [{"checkpoint_id": "2", "score": 0.81}]}
    page = render_report(data)
    ticks = x_tick_labels(page, "loss")
    assert len(ticks) >= 3 and all(re.fullmatch(r"\d+", t) for t in ticks), ticks
    assert 1 <= int(ticks[0]) and int(ticks[-1]) <= 45
    loss = page.split('class="chart loss"', 1)[1].split("</svg>", 1)[0]
    assert "ckpt 1" in loss and "ckpt 2 · 0.810" in loss and "ckpt 3" in loss
    assert loss.count('class="checkpoint best"') == 1 and loss.count('class="checkpoint"') == 2


def test_the_report_needs_no_matplotlib():
    """The charts are SVG drawn by ``services.report.charts``: rendering a full report imports no plotting library."""
    probe = ("import sys; from harness.report_data import build_data; "
             "from gemini_tuning.services.reporting import render_report; "
             "assert render_report(build_data()).count('<svg') == 3; "
             "print(sorted(k for k in sys.modules if k.split('.')[0] in ('matplotlib', 'PIL')))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": os.pathsep.join(map(str, (PLUGINS, ROOT, TESTS))), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_the_header_traces_the_decision_to_the_pipeline_file_and_the_verdict():
    gate = {"decision": "promote", "summary": "all rules passed", "rules": [], "verdict_id": "v-1f2e",
            "policy_hash": "sha256:gatepolicy", "pipeline": {"id": "router", "file": "pipelines/router.yaml",
                                                             "revision": "sha256:rev<1>", "policy_hash": "sha256:pp"}}
    html = render_report({"title": "T", "run_id": "r1", "gate": gate})
    for text in ("router", "pipelines/router.yaml", "sha256:rev&lt;1&gt;", "sha256:pp", "v-1f2e", "sha256:gatepolicy"):
        assert text in html, text
    assert "sha256:rev<1>" not in html   # escaped like every other input
    # a run not built from a pipeline file: no empty provenance rows
    plain = render_report({"title": "T", "run_id": "r1", "gate": {"decision": "delete", "rules": []}})
    assert "Pipeline file" not in plain and "File revision" not in plain


def test_the_service_token_count_and_the_dropped_examples_by_source_line():
    """Vertex's data stats in the report: billable tokens (service vs the prepare step's estimate) and the examples
    it dropped, named by the user's own lines (the line map), in order, escaped; more than 20 are summarised."""
    from gemini_tuning.core.dataset import line_ranges
    from gemini_tuning.core.dataset.prepare import source_lines

    tuning = {"backend": "vertex", "name": "projects/p/locations/l/tuningJobs/1", "example_count": 400,
              "billable_tokens": 123456, "dropped_count": 25,
              "dropped": [[i, f"The example has {9000 + i} tokens <script>"] for i in range(1, 26)]}
    ranges = line_ranges([2 * n for n in range(1, 401)])      # every other source line became an example
    lines = {"source": "tickets.jsonl", "lines": source_lines(ranges, range(1, 26))}
    data = report.report_data(dag_id="d", run_id="r", generated_at=None, tuning=tuning, evaluation={}, gate={},
                              action_taken=None, examples=[], dataset={"stats": {"train_tokens": 120000}},
                              dropped_lines=lines)
    assert data["tuning"]["dropped"][0] == {"index": 1, "line": 2, "source": "tickets.jsonl",
                                            "reason": "The example has 9001 tokens <script>"}
    html = render_report(data)
    text = re.sub(r"<[^>]+>", " ", html)
    assert "service 123,456 · estimate (chars / 4) 120,000 (the training examples, one pass)" in text
    assert "25 example(s) (6.2 % of 400)" in text
    assert "line 2 of tickets.jsonl" in text and "line 40 of tickets.jsonl" in text   # the 20th
    assert "line 42 of tickets.jsonl" not in text and "and 5 more listed by the service" in text
    assert "<script>" not in html and "tokens &lt;script&gt;" in html
    # without the line map: the service's own index
    plain = render_report(report.report_data(dag_id="d", run_id="r", generated_at=None, tuning=tuning,
                                             evaluation={}, gate={}, action_taken=None, examples=[]))
    assert "example 1 of the uploaded file" in re.sub(r"<[^>]+>", " ", plain)
