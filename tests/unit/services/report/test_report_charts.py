"""The SVG chart module shared by the report and the UI page (``services.report.charts``), its Jinja2 rendering
(``services.report.render``), and the house rule for the new modules: every public function and class documents
each of its arguments with a ``:param:`` line."""

from __future__ import annotations

import inspect
import math
import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gemini_tuning.services.report import charts, examples, format, model, render
from gemini_tuning.services.report.render import chart_svg
from gemini_tuning.ui import pages

pytestmark = pytest.mark.fast


def x_ticks(svg: str) -> list[int]:
    return [int(t) for t in re.findall(r'<text class="tick-x"[^>]*>([^<]*)</text>', svg)]


@settings(max_examples=200, deadline=None)
@given(lo=st.floats(-1e6, 1e6), span=st.floats(0, 1e6), target=st.integers(1, 20))
@example(lo=5e-324, span=2.0, target=1)  # lo / step underflowed to 0, a tick below the range (CI, stop 24)
@example(lo=0.0, span=5e-324, target=1)   # a subnormal span: the step's magnitude underflowed (StopIteration)
def test_integer_ticks_are_integers_inside_the_range_evenly_spaced(lo, span, target):
    hi = lo + span
    ticks = charts.integer_ticks(lo, hi, target)
    assert all(isinstance(t, int) and lo <= t <= hi for t in ticks)
    steps = {b - a for a, b in zip(ticks, ticks[1:])}
    assert len(steps) <= 1 and all(s >= 1 for s in steps)
    assert len(ticks) <= 2 * target + 2
    if span >= 1:
        assert ticks, (lo, hi)


def test_nice_ticks_are_round_and_say_enough_decimals():
    ticks, digits = charts.nice_ticks(0.13, 0.61, 5)
    assert [f"{t:.{digits}f}" for t in ticks] == ["0.2", "0.3", "0.4", "0.5", "0.6"]
    assert charts.nice_ticks(1.0, 1.0) == ([], 0)


def test_the_loss_chart_marks_checkpoints_epochs_and_the_minimum():
    pts = [(s, 2.0 * 0.9 ** s) for s in range(1, 46)]
    chart = charts.loss_chart([("training loss", pts, charts.LOSS_COLOR)], epochs=[(16, 2), (31, 3)],
                              markers=[charts.Marker(15, "ckpt 1"), charts.Marker(50, "ckpt 2 · 0.8", best=True)],
                              mark_minimum=True)
    svg = chart_svg(chart)
    ticks = x_ticks(svg)
    assert ticks and ticks[-1] == 50                                 # the axis extends to the last checkpoint
    assert svg.count('class="epoch"') == 2 and "epoch 2" in svg and "epoch 3" in svg
    assert svg.count('class="checkpoint"') == 1 and svg.count('class="checkpoint best"') == 1
    assert "ckpt 2 · 0.8" in svg and f"min {pts[-1][1]:.4g}" in svg
    assert svg.count("<circle") == 45


def test_a_single_point_and_bad_points_still_draw():
    svg = chart_svg(charts.loss_chart([("loss", [(5.0, 0.7), (6.0, math.nan), (math.inf, 1.0)], "#000")]))
    assert x_ticks(svg) == [4, 5, 6] and svg.count("<circle") == 1
    assert "no points yet" in chart_svg(charts.loss_chart([("loss", [(1.0, math.nan)], "#000")]))


def test_every_text_and_attribute_of_a_chart_is_escaped():
    evil = '"><script>alert(1)</script>'
    svg = chart_svg(charts.loss_chart([(evil, [(1, 1.0), (2, 0.5)], "#000")], markers=[charts.Marker(1, evil)],
                                      title=evil))
    assert "<script>" not in svg and svg.count("&#34;&gt;&lt;script&gt;") == 3      # title, legend, marker
    bars = chart_svg(charts.bar_chart([evil], [(evil, [2.0], "#000")], title=evil))
    assert "<script>" not in bars and 'width="502.0"' in bars        # a value beyond ``hi`` is clipped
    assert chart_svg(None) == "" and charts.bar_chart([], []) is None


def test_the_progress_bar_says_its_value():
    svg = chart_svg(charts.progress_bar(250.0))
    assert 'aria-valuenow="100.0"' in svg and ">100.0%</text>" in svg and 'role="progressbar"' in svg
    assert ">unknown</text>" in chart_svg(charts.progress_bar(None))


def test_the_stylesheet_is_one_file_inlined_by_the_report_and_the_pages():
    css = (render.TEMPLATES / "style.css").read_text()
    report = render.render_report({"title": "t", "run_id": "r"})
    page = pages.error_page(404, "gone")
    for html in (report, page):
        assert css.strip() in html and html.count("<style>") == 1
        assert "<link" not in html and "<script" not in html


MODULES = (charts, examples, format, model, render, pages)


def _public(module):
    for name, obj in vars(module).items():
        if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        if inspect.isfunction(obj) or inspect.isclass(obj):
            yield name, obj


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_every_public_function_and_class_documents_its_arguments(module):
    missing = []
    for name, obj in _public(module):
        doc = inspect.getdoc(obj) or ""
        if not doc:
            missing.append(f"{name}: no docstring")
            continue
        params = inspect.signature(obj).parameters
        for p in params:
            if p not in ("self", "cls") and f":param {p}:" not in doc:
                missing.append(f"{name}: no :param {p}:")
    assert missing == []


LEAF = st.one_of(st.none(), st.booleans(), st.integers(-5, 10 ** 6), st.floats(), st.text(max_size=8),
                 st.sampled_from(["promote", "pass", "fail", "<script>x</script>", "champion_margin", "1"]))
JUNK = st.recursive(LEAF, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(
    st.sampled_from(["step", "epoch", "loss", "checkpoint_id", "score", "scores", "metrics", "per_tag", "name",
                     "verdict", "details", "rules", "challenger", "champion", "summary", "models", "judge",
                     "pairwise", "pointwise", "examples", "n", "error_rate", "latency_s", "tokens"])
    | st.text(max_size=4),
    kids, max_size=5), max_leaves=20)


@settings(max_examples=150, deadline=None)
@given(parts=st.dictionaries(st.sampled_from(["tuning", "evaluation", "gate", "examples", "decision", "title",
                                              "action_taken", "generated_at", "dag_id"]), JUNK, max_size=6))
def test_the_report_renders_whatever_its_input_holds(parts):
    page = render.render_report({"title": "t", "run_id": "r", **parts})
    assert page.startswith("<!DOCTYPE html>") and "<script>" not in page
