"""The report's example sections as plain data: the prompts where challenger and champion differ (with no
champion: those the challenger got wrong), and the model-based (judge) evaluation. Prompts, answers and the judge's
explanations are untrusted: they stay text here and are escaped by the templates."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .format import as_dict, as_list, fmt, fmt_score, num

__all__ = ["MAX_EXAMPLE_ROWS", "MAX_TEXT_CHARS", "classify", "examples_section", "judge_section", "text_cell"]

#: Rows of the examples table; the rest are counted in a note.
MAX_EXAMPLE_ROWS = 100
#: Characters of one prompt/answer/reference shown in the examples table.
MAX_TEXT_CHARS = 1500


def text_cell(text: Any, error: Any = None) -> dict:
    """One answer (or prompt, reference, explanation) of a table: ``{"error", "text", "more"}``, the text cut at
    :data:`MAX_TEXT_CHARS` (``more``: the characters left out); ``text`` None: nothing to show.

    :param text: the text.
    :param error: the call's error instead of an answer.
    """
    if error:
        return {"error": str(error), "text": None, "more": 0}
    if text is None:
        return {"error": None, "text": None, "more": 0}
    s = str(text)
    return {"error": None, "text": s[:MAX_TEXT_CHARS], "more": max(0, len(s) - MAX_TEXT_CHARS)}


def classify(ex: Mapping) -> tuple[int, str, str] | None:
    """(sort rank, css class, label) of an example where the models differ, or None if they do not.

    :param ex: one example (``challenger``/``champion`` answers, scores and errors).
    """
    ce, pe = ex.get("challenger_error"), ex.get("champion_error")
    cs, ps = num(ex.get("challenger_score")), num(ex.get("champion_score"))
    if ce and not pe:
        return (0, "bad", "challenger failed")
    if pe and not ce:
        return (2, "good", "champion failed")
    if ce and pe:
        return None
    if cs is not None and ps is not None and abs(cs - ps) > 1e-12:
        return (1, "bad", "champion better") if cs < ps else (2, "good", "challenger better")
    a, b = ex.get("challenger"), ex.get("champion")
    if (a is None) != (b is None) or (a is not None and str(a).strip() != str(b).strip()):
        return (3, "muted", "same score")
    return None


def _picked(examples: list[Mapping], has_champion: bool) -> tuple[str, str, list]:
    """(title, sub-title, [((rank, cls, label), example), ...]) of the examples to list, worst first."""
    if has_champion:
        picked = sorted(((c[0], i, c, x) for i, x in enumerate(examples) if (c := classify(x)) is not None),
                        key=lambda t: (t[0], t[1]))
        rows = [(c, x) for _, _, c, x in picked]
        counts: dict[str, int] = {}
        for c, _ in rows:
            counts[c[2]] = counts.get(c[2], 0) + 1
        sub = (f"{len(rows)} of {len(examples)} example(s) differ"
               + (": " + ", ".join(f"{n} {k}" for k, n in counts.items()) if counts else "")
               + ". Worst for the challenger first.")
        return "Examples where the models differ", sub, rows
    rows = []
    for x in examples:
        s = num(x.get("challenger_score"))
        if x.get("challenger_error"):
            rows.append(((0, "bad", "failed"), x))
        elif s is not None and s < 1 - 1e-12:
            rows.append(((1, "bad", "wrong"), x))
    rows.sort(key=lambda t: t[0][0])
    sub = f"No champion to compare with: {len(rows)} of {len(examples)} example(s) scored below 1 or failed."
    return "Examples the challenger got wrong", sub, rows


def examples_section(data: Mapping) -> dict:
    """The examples section: ``title``, ``sub``, ``has_champion``, ``n_examples``, ``rows`` (at most
    :data:`MAX_EXAMPLE_ROWS`), ``more`` (rows left out) and ``results_uri``.

    :param data: the report's input.
    """
    examples = [as_dict(x) for x in as_list(data.get("examples"))]
    ev = as_dict(data.get("evaluation"))
    has_champion = bool(as_dict(ev.get("models")).get("champion")) or any(
        x.get("champion") is not None or x.get("champion_error") for x in examples)
    title, sub, picked = _picked(examples, has_champion)
    rows = []
    for k, ((_, cls, verdict), x) in enumerate(picked[:MAX_EXAMPLE_ROWS], 1):
        rows.append({"k": k, "prompt": "" if x.get("prompt") is None else str(x.get("prompt")),
                     "prompt_id": None if x.get("prompt_id") is None else str(x.get("prompt_id")),
                     "tags": [str(t) for t in as_list(x.get("tags"))], "reference": text_cell(x.get("reference")),
                     "challenger": text_cell(x.get("challenger"), x.get("challenger_error")),
                     "champion": text_cell(x.get("champion"), x.get("champion_error")),
                     "challenger_score": fmt_score(x.get("challenger_score")),
                     "champion_score": fmt_score(x.get("champion_score")), "cls": cls, "label": verdict})
    return {"title": title, "sub": sub, "has_champion": has_champion, "n_examples": len(examples), "rows": rows,
            "more": len(picked) - len(rows), "max_rows": MAX_EXAMPLE_ROWS, "results_uri": ev.get("results_uri")}


def judge_section(data: Mapping, gate: Mapping) -> dict | None:
    """Model-based evaluation: pairwise wins / losses / ties with the sign test's p-value, the pointwise means,
    and the judged examples with the judge's explanations. None when there was no judge.

    :param data: the report's input.
    :param gate: the gate's decision (its ``pairwise_win_rate`` rule holds the p-value it used).
    """
    judge = as_dict(as_dict(data.get("evaluation")).get("judge"))
    if not judge:
        return None
    rows = [{"label": "Judge", "code": str(judge.get("model")), "text": f"({judge.get('mode')})"}]
    plain = {"cls": "", "swatch": "", "muted": False}
    pw = as_dict(judge.get("pairwise"))
    rule = next((r for r in as_list(gate.get("rules")) if isinstance(r, Mapping)
                 and r.get("name") == "pairwise_win_rate"), None)
    details = as_dict(as_dict(rule).get("details"))
    if pw:
        rows.append({"label": "Pairwise (challenger vs champion, both orders)", "code": None,
                     "text": f"{pw.get('wins')} win(s) · {pw.get('losses')} loss(es) · {pw.get('ties')} tie(s) "
                             f"· {pw.get('errors')} judge error(s)"})
        rows.append({"label": "Win rate over non-tied pairs", "code": None, "text": fmt(pw.get("win_rate"))})
        rows.append({"label": "Sign test p-value" + (f" (against {fmt(details.get('p0'))})" if details else ""),
                     "code": None, "text": fmt(details.get("p_value", pw.get("p_value")))})
    for name, mean in as_dict(judge.get("pointwise")).items():
        rows.append({"label": f"Mean judge score, {name}", "code": None, "text": fmt(mean)})
    examples = []
    for ex in as_list(judge.get("examples")):
        if not isinstance(ex, Mapping):
            continue
        pwx = as_dict(ex.get("pairwise"))
        expl = " / ".join(str(x) for x in as_list(pwx.get("explanations")) if x)
        pt = as_dict(ex.get("pointwise"))
        for v in pt.values():
            if as_dict(v).get("explanation") and not expl:
                expl = str(as_dict(v)["explanation"])
        scores = ", ".join(f"{k}: {fmt(as_dict(v).get('score'))}" for k, v in pt.items())
        examples.append({"prompt": text_cell(ex.get("prompt")), "challenger": text_cell(ex.get("challenger")),
                         "champion": text_cell(ex.get("champion")),
                         "verdict": str(pwx.get("outcome") or "") + (f" · {scores}" if scores else ""),
                         "explanation": text_cell(expl)})
    return {"rows": [{**plain, **r} for r in rows], "examples": examples}
