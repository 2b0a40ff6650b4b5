"""Report data made by the real metrics and gate (``summarize``, ``score_all``, ``decide``) from the demo prompt set
and simulated answers: the input of the report tests (``tests/unit/services/report/``) and the browser checks of the
rendered report (``tests/integration/test_report_*browser.py``)."""

from __future__ import annotations

import json
import random

from gemini_tuning.core.gate import GateConfig, decide
from gemini_tuning.core.metrics import Answer, score_all, summarize
from gemini_tuning.core.promptset import Prompt
from harness.paths import DEMO

MALICIOUS = "<script>alert(1)</script>"
LABELS = ("billing", "shipping", "technical", "account", "refund", "other")


def _answers(prompts, rng, p_right, p_error, who):
    out = {}
    for p in prompts:
        if rng.random() < p_error:
            out[p.id] = Answer(p.id, None, "503 UNAVAILABLE: backend overloaded", None)
            continue
        hard = "hard" in p.tags or "ambiguous" in p.tags
        right = rng.random() < (p_right - (0.2 if hard else 0))
        text = p.reference if right else rng.choice([x for x in LABELS if x != p.reference])
        if who == "champion" and right and rng.random() < 0.3:
            text = p.reference.capitalize() + "."  # normalized match, not exact
        out[p.id] = Answer(p.id, text, None, rng.uniform(0.3, 1.6))
    return out


def build_data(*, n_prompts=120, champion=True, malicious=False, seed=7, p_challenger=0.95, p_champion=0.75,
               challenger_error_rate=0.01) -> dict:
    """Report input made by the real metrics and gate from the demo prompt set and simulated answers."""
    rows = [json.loads(x) for x in (DEMO / "eval_prompts.jsonl").read_text().splitlines() if x.strip()][:n_prompts]
    prompts = [Prompt(f"p{i:03d}", r["prompt"], r["reference"], None, tuple(r["tags"])) for i, r in enumerate(rows)]
    if malicious:
        prompts[0] = Prompt("p000", MALICIOUS + " & \"quotes\"", prompts[0].reference, None, ("<b>tag</b>",))
    rng = random.Random(seed)
    ans_ch = _answers(prompts, rng, p_challenger, challenger_error_rate, "challenger")
    ans_cp = _answers(prompts, rng, p_champion, 0.02, "champion") if champion else None
    if malicious:
        ans_ch["p000"] = Answer("p000", "<img src=x onerror=alert(2)>", None, 0.5)
    sum_ch = summarize(prompts, ans_ch)
    sum_cp = summarize(prompts, ans_cp) if champion else None
    sc_ch = {s.prompt_id: s for s in score_all(prompts, ans_ch)}
    sc_cp = {s.prompt_id: s for s in score_all(prompts, ans_cp)} if champion else {}
    gate = decide(list(sc_ch.values()), list(sc_cp.values()) if champion else None,
                  GateConfig(min_prompts=20, thresholds={"normalized_match": 0.6, "macro_f1": 0.5}),
                  challenger_summary=sum_ch).to_dict()
    examples = []
    for p in prompts:
        a, b = ans_ch[p.id], (ans_cp or {}).get(p.id)
        sa, sb = sc_ch[p.id], sc_cp.get(p.id)
        examples.append({
            "prompt_id": p.id, "prompt": p.prompt, "reference": p.reference, "tags": list(p.tags),
            "challenger": a.text, "champion": b.text if b else None,
            "challenger_score": sa.scores["normalized_match"] if sa.scores else None,
            "champion_score": sb.scores["normalized_match"] if sb and sb.scores else None,
            "challenger_error": a.error, "champion_error": b.error if b else None})
    loss = [[s, 1 + (s - 1) // 15, 2.4 * 0.93 ** s + 0.15 + 0.05 * rng.random()] for s in range(1, 46)]
    return {
        "title": "Gemini tuning: support-ticket router",
        "dag_id": "gemini_tune_evaluate_promote", "run_id": "manual__2025-06-01T12:00:00+00:00",
        "generated_at": "2025-06-01T13:05:42+00:00",
        "tuning": {"backend": "vertex", "job_name": "projects/p/locations/us-central1/tuningJobs/123",
                   "base_model": "gemini-2.0-flash-001", "tuned_model": "projects/p/locations/us-central1/models/9@1",
                   "endpoint": "projects/p/locations/us-central1/endpoints/42", "loss_history": loss,
                   "hyperparameters": {"epoch_count": 3, "learning_rate_multiplier": 1.0, "adapter_size": 4},
                   "example_count": 360},
        "evaluation": {"n_prompts": len(prompts), "results_uri": "gs://bucket/runs/r1/eval/results.jsonl",
                       "models": {"challenger": "projects/p/locations/us-central1/models/9@1",
                                  "champion": "projects/p/locations/us-central1/models/7@1" if champion else None},
                       "summary": {"challenger": sum_ch, "champion": sum_cp}},
        "gate": gate,
        "decision": gate["decision"],
        "action_taken": "promoted to champion" if gate["decision"] == "promote" else "deleted model and endpoint",
        "examples": examples,
    }
