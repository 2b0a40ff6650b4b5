"""``continue_from`` resolution (``services.continuation``) and the choice of the best checkpoint
(``services.eval_results.choose_checkpoint``), with in-memory stand-ins for GCS and the Model Registry."""

from __future__ import annotations

import pytest

from gemini_tuning.backends.errors import NotFoundError
from gemini_tuning.backends.vertex_registry import ModelVersion
from gemini_tuning.core.generation import GenerationSettings
from gemini_tuning.core.metrics import Answer
from gemini_tuning.core.promptset import Prompt
from gemini_tuning.services import continuation
from gemini_tuning.services.continuation import ContinuationError, resolve
from gemini_tuning.services.eval_engine import Target
from gemini_tuning.services.eval_results import EvaluationPlan, ModelTarget, choose_checkpoint

pytestmark = pytest.mark.fast

M = "projects/p/locations/l/models/9"


class Registry:
    """Versions 1 and 2 of model 9; the alias ``prod`` is on version 2."""

    def __init__(self):
        self.versions = {"1": ModelVersion(M, "1", version_aliases=("default",), checkpoint_ids=("1", "2", "3"),
                                           default_checkpoint_id="3"),
                         "2": ModelVersion(M, "2", version_aliases=("prod",), checkpoint_ids=("1",),
                                           default_checkpoint_id="1")}

    def get_model(self, name):
        base, _, ver = name.partition("@")
        if base != M:
            raise NotFoundError(404, f"The resource '{name}' was not found.")
        ver = ver or "default"
        for mv in self.versions.values():
            if ver == mv.version_id or ver in mv.version_aliases:
                return mv
        raise NotFoundError(404, f"The resource '{name}' was not found.")


@pytest.fixture
def pointer(monkeypatch):
    state = {"pointer": None}
    monkeypatch.setattr(continuation, "read_champion", lambda storage, uri: (state["pointer"], 1 if state["pointer"]
                                                                              else 0))
    return state


def test_no_continuation(pointer):
    assert resolve(None, backend="vertex") is None and resolve("", backend="gemini_api") is None


def test_a_named_version_an_alias_or_the_default_version_resolve_to_an_exact_version(pointer):
    reg = Registry()
    assert resolve(f"{M}@1", backend="vertex", registry=reg).model_version == f"{M}@1"
    by_alias = resolve(f"{M}@prod", backend="vertex", registry=reg)
    assert (by_alias.model_version, by_alias.checkpoint_id, by_alias.source) == (f"{M}@2", "1", f"{M}@prod")
    assert resolve(M, backend="vertex", registry=reg).model_version == f"{M}@1"


def test_champion_resolves_to_the_pointers_version_and_checkpoint(pointer):
    pointer["pointer"] = {"backend": "vertex", "tuned_model": f"{M}@1", "checkpoint_id": "2"}
    found = resolve("champion", backend="vertex", pointer_uri="gs://b/champion.json", registry=Registry())
    assert (found.model_version, found.checkpoint_id) == (f"{M}@1", "2")


@pytest.mark.parametrize("value, backend, champ, message", [
    ("champion", "vertex", None, "there is no champion yet"),
    ("champion", "vertex", {"backend": "gemini_api", "tuned_model": "tunedModels/x"}, "is a gemini_api model"),
    ("champion", "vertex", {"backend": "vertex", "tuned_model": f"{M}@1", "checkpoint_id": "7"}, "no checkpoint '7'"),
    (f"{M}@1", "gemini_api", None, "Vertex AI feature"),
    ("models/9", "vertex", None, "not a Vertex AI model name"),
    (f"{M}@5", "vertex", None, "is not in the Model Registry"),
    ("projects/p/locations/l/models/404@1", "vertex", None, "is not in the Model Registry"),
])
def test_what_cannot_be_resolved_is_a_clear_error(pointer, value, backend, champ, message):
    pointer["pointer"] = champ
    with pytest.raises(ContinuationError, match=message):
        resolve(value, backend=backend, pointer_uri="gs://b/champion.json", registry=Registry())


def _plan(labels):
    prompts = [Prompt(id=str(i), prompt=f"q{i}", reference="yes") for i in range(4)]
    checkpoints = {f"checkpoint-{k}": {"checkpoint_id": str(k), "epoch": k, "step": 10 * k, "endpoint": f"e{k}"}
                   for k in labels}
    models = [ModelTarget(Target(label, "vertex", c["endpoint"]), f"{M}@1") for label, c in checkpoints.items()]
    return prompts, EvaluationPlan(prompts, models, GenerationSettings(), None, 0, checkpoints)


def _answers(prompts, n_right):
    return {p.id: Answer(p.id, "yes" if i < n_right else "no", None, 0.1) for i, p in enumerate(prompts)}


def test_the_best_checkpoint_becomes_the_challenger_ties_go_to_the_earlier():
    prompts, plan = _plan([3, 1, 2])
    answers = {"checkpoint-1": _answers(prompts, 3), "checkpoint-2": _answers(prompts, 3),
               "checkpoint-3": _answers(prompts, 1)}
    best = choose_checkpoint(plan, answers, "normalized_match")
    assert best["checkpoint_id"] == "1" and best["score"] == 0.75 and best["endpoint"] == "e1"
    assert [s["checkpoint_id"] for s in best["scores"]] == ["1", "2", "3"]        # in epoch order
    assert answers["challenger"] is answers["checkpoint-1"]


def test_a_later_checkpoint_wins_when_it_is_better():
    prompts, plan = _plan([1, 2])
    answers = {"checkpoint-1": _answers(prompts, 1), "checkpoint-2": _answers(prompts, 4)}
    assert choose_checkpoint(plan, answers, "normalized_match")["checkpoint_id"] == "2"


def test_no_checkpoint_targets_no_choice():
    prompts = [Prompt(id="0", prompt="q", reference="yes")]
    plan = EvaluationPlan(prompts, [], GenerationSettings(), None, 0)
    assert choose_checkpoint(plan, {}, "normalized_match") is None
