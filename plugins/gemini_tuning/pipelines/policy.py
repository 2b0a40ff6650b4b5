"""What a run of a reviewed pipeline may change: its conf may tighten the file's policy, never loosen it.

A run's conf uses the run Params' flat names (``dags/gemini_tuning_pipeline.py`` PARAMS). :data:`RUN_FIELDS` are
the ones a run may set:

* free (any valid value): ``training_data``, ``eval_prompts``, ``system_instruction`` (each path must stay under
  an allowed storage root), ``epochs``, ``learning_rate_multiplier``, ``continue_from``;
* from an allowed list: ``project_id`` (``allowed_projects`` ∪ {``google.project``}), ``location``
  (``allowed_locations``), ``base_model`` (``allowed_base_models``); an empty list allows only the file's value;
* tighten-only: the gate thresholds (``gate_max_error_rate`` and ``gate_max_dropped_fraction`` down, the others
  up), ``require_approval`` (may be
  turned on, not off), ``approval_timeout_hours``, ``max_training_tokens`` and ``max_cost`` (down; ``null`` is
  "no limit", so it loosens a number).

Every other key (``gcs_prefix``, ``backend``, ``gate_primary_metric``, ``judge``, a price, an unknown key…) is
fixed: a value other than the file's is a violation. :func:`check_conf` reports every violation at once;
:func:`run_param_schemas` bounds the trigger form the same way.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from .loader import Pipeline
from .spec import is_instruction_path, is_under

__all__ = ["ALLOWED_LIST_FIELDS", "FREE_FIELDS", "PATH_FIELDS", "RUN_FIELDS", "TIGHTEN_FIELDS", "PolicyViolation",
           "Violation", "check_conf", "run_param_schemas"]

PATH_FIELDS = ("training_data", "eval_prompts", "system_instruction")
FREE_FIELDS = (*PATH_FIELDS, "epochs", "learning_rate_multiplier", "continue_from")
ALLOWED_LIST_FIELDS = ("project_id", "location", "base_model")
#: tighten-only field → (direction: ">=" the policy's value or "<=", integer?, the schema's own bounds)
TIGHTEN_FIELDS: dict[str, tuple[str, bool, dict]] = {
    "gate_min_prompts": (">=", True, {"minimum": 1}),
    "gate_min_score": (">=", False, {"minimum": 0, "maximum": 1}),
    "gate_min_margin": (">=", False, {"minimum": -1, "maximum": 1}),
    "gate_confidence": (">=", False, {"exclusiveMinimum": 0.5, "exclusiveMaximum": 1}),
    "gate_pairwise_min_decisive": (">=", True, {"minimum": 1}),
    "gate_pairwise_margin": (">=", False, {"minimum": 0, "maximum": 0.49}),
    "gate_max_error_rate": ("<=", False, {"minimum": 0, "maximum": 1}),
    "gate_max_dropped_fraction": ("<=", False, {"minimum": 0, "maximum": 1}),
    "approval_timeout_hours": ("<=", False, {"exclusiveMinimum": 0}),
    "max_training_tokens": ("<=", True, {"minimum": 1}),
    "max_cost": ("<=", False, {"minimum": 0}),
}
#: tighten-only fields where null means "no limit"
NULLABLE_LIMITS = ("approval_timeout_hours", "max_training_tokens", "max_cost", "gate_max_dropped_fraction")
#: free numeric fields → (integer?, bounds)
FREE_NUMBERS: dict[str, tuple[bool, dict]] = {
    "epochs": (True, {"minimum": 1, "maximum": 100}),
    "learning_rate_multiplier": (False, {"exclusiveMinimum": 0, "maximum": 100}),
}
#: the flat names a run's conf may set
RUN_FIELDS: tuple[str, ...] = (*FREE_FIELDS, *ALLOWED_LIST_FIELDS, *TIGHTEN_FIELDS, "require_approval")

TITLES = {
    "training_data": "Training data", "eval_prompts": "Evaluation prompt set",
    "system_instruction": "System instruction for evaluation (text, or a .txt path / gs:// URI)",
    "epochs": "Epochs", "learning_rate_multiplier": "Learning-rate multiplier",
    "continue_from": "Continue tuning from (Vertex)", "project_id": "Project", "location": "Location",
    "base_model": "Base model", "gate_min_prompts": "Gate: minimum evaluated prompts",
    "gate_min_score": "Gate: minimum primary metric (absolute threshold)",
    "gate_min_margin": "Gate: challenger − champion margin on the primary metric",
    "gate_confidence": "Gate: confidence of the paired test against the champion",
    "gate_pairwise_min_decisive": "Gate: minimum non-tied judged pairs (pairwise judge)",
    "gate_pairwise_margin": "Gate: win rate must beat 0.5 + this (pairwise judge)",
    "gate_max_error_rate": "Gate: maximum error rate",
    "gate_max_dropped_fraction": "Gate: most of the training examples the service may drop",
    "require_approval": "Require a human's approval to promote",
    "approval_timeout_hours": "Approval timeout (h)", "max_training_tokens": "Budget: max training tokens",
    "max_cost": "Budget: max cost",
}
LOOSEN = "a run may tighten the policy, not loosen it"


@dataclass
class Violation:
    """One conf value the pipeline's policy does not allow.

    :param field: the flat name (``gate_min_score``).
    :param policy: the pipeline's value (or the allowed values / roots).
    :param asked: the run's value.
    :param rule: what is wrong, in words.
    :param fixed: the field is fixed by the file (the message then says so).
    """

    field: str
    policy: Any
    asked: Any
    rule: str
    fixed: bool = False

    def message(self, file: str) -> str:
        """The violation as one line.

        :param file: the pipeline file as shown (``pipelines/router.yaml``).
        """
        if self.fixed:
            return f"{self.field} is fixed by {file} (policy {self.policy!r}, asked {self.asked!r})"
        return f"{file}: {self.field}: {self.rule}"


class PolicyViolation(Exception):
    """A run's conf breaks its pipeline's policy; :attr:`violations` lists every violation.

    :param file: the pipeline file as shown.
    :param violations: the :class:`Violation` list (at least one).
    """

    def __init__(self, file: str, violations: list[Violation]):
        self.file = file
        self.violations = list(violations)
        super().__init__("\n".join(v.message(file) for v in self.violations))


def shown_file(pipeline: Pipeline) -> str:
    """The pipeline's file as messages name it: its folder's name and the file name (``pipelines/router.yaml``).

    :param pipeline: the pipeline.
    """
    return os.path.join(os.path.basename(os.path.dirname(pipeline.file)), os.path.basename(pipeline.file))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number(name: str, value: Any, integer: bool, bounds: dict, policy: Any) -> tuple[Any, Violation | None]:
    """``(value, None)`` when ``value`` is a number (an integer, if ``integer``) within ``bounds``; else a
    violation."""
    if not _is_number(value):
        return value, Violation(name, policy, value, "must be a number")
    if not math.isfinite(value):
        return value, Violation(name, policy, value, "must be a finite number")
    if integer:
        if isinstance(value, float) and not value.is_integer():
            return value, Violation(name, policy, value, "must be an integer")
        value = int(value)
    for key, ok, words in (("minimum", lambda v, b: v >= b, ">="), ("maximum", lambda v, b: v <= b, "<="),
                           ("exclusiveMinimum", lambda v, b: v > b, ">"),
                           ("exclusiveMaximum", lambda v, b: v < b, "<")):
        if key in bounds and not ok(value, bounds[key]):
            return value, Violation(name, policy, value, f"must be {words} {bounds[key]} (asked {value!r})")
    return value, None


def _path(pipeline: Pipeline, name: str, value: Any, policy: Any) -> tuple[Any, Violation | None]:
    if name == "system_instruction":
        if value is None or (isinstance(value, str) and not is_instruction_path(value)):
            return value, None      # no instruction, or the instruction's text itself
    if not isinstance(value, str) or not value:
        return value, Violation(name, policy, value, "must be a path or a gs:// URI (a non-empty string)")
    roots = pipeline.spec.storage_roots()
    if value.startswith("gs://"):
        normalized = value
    elif not os.path.isabs(value):
        return value, Violation(name, policy, value, f"must be an absolute path or a gs:// URI, not {value!r}")
    else:
        normalized = os.path.normpath(value)
    inside = [r for r in roots if is_under(normalized, r)]
    if inside and not normalized.startswith("gs://"):
        # a symlink must not lead out of the root either
        real = os.path.realpath(normalized)
        inside = [r for r in inside if is_under(real, os.path.realpath(r))]
    if not inside:
        return value, Violation(name, roots, value, f"{value!r} is not under an allowed storage root of "
                                                    f"{shown_file(pipeline)} ({', '.join(roots)})")
    return normalized, None


def _allowed(pipeline: Pipeline, name: str) -> list:
    spec = pipeline.spec
    if name == "project_id":
        return list(dict.fromkeys([spec.google.project, *spec.policy.allowed_projects]))
    if name == "location":
        return list(spec.policy.allowed_locations) or [spec.google.location]
    return list(spec.policy.allowed_base_models) or [spec.google.base_model]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if _is_number(a) and _is_number(b):
        return a == b
    return type(a) is type(b) and a == b


def _tighten(pipeline: Pipeline, name: str, value: Any, policy: Any) -> tuple[Any, Violation | None]:
    if name == "require_approval":
        if not isinstance(value, bool):
            return value, Violation(name, policy, value, "must be true or false")
        if policy and not value:
            return value, Violation(name, policy, value, f"the policy says true, the run asked false ({LOOSEN})")
        return value, None
    direction, integer, bounds = TIGHTEN_FIELDS[name]
    if value is None:
        if name in NULLABLE_LIMITS:
            if policy is None:
                return None, None
            return value, Violation(name, policy, value, f"the policy says {direction} {policy!r}, the run asked "
                                                         f"null (no limit) ({LOOSEN})")
        return value, Violation(name, policy, value, "must be a number")
    value, bad = _number(name, value, integer, bounds, policy)
    if bad:
        return value, bad
    if name == "max_cost" and pipeline.spec.policy.budget.price_per_million_training_tokens is None:
        return value, Violation(name, policy, value, "max_cost needs price_per_million_training_tokens, which "
                                                     f"{shown_file(pipeline)} does not set")
    if policy is None:
        return value, None                                  # any limit tightens "no limit"
    if (direction == ">=" and value < policy) or (direction == "<=" and value > policy):
        return value, Violation(name, policy, value, f"the policy says {direction} {policy!r}, the run asked "
                                                     f"{value!r} ({LOOSEN})")
    return value, None


def check_conf(pipeline: Pipeline, conf: dict) -> dict:
    """The effective flat values of a run: the file's (:meth:`Pipeline.defaults`) with the conf's allowed values
    applied (paths normalized).

    :param pipeline: the pipeline the run belongs to.
    :param conf: the run's conf (flat names; values equal to the file's are always fine).
    :raises PolicyViolation: with every violation of the conf (a loosened threshold, a fixed field, a path outside
        the allowed storage roots, a value outside an allowed list, a string or bool given for a number…).
    """
    defaults = pipeline.defaults()
    effective = dict(defaults)
    violations: list[Violation] = []
    for name, asked in (conf or {}).items():
        policy = defaults.get(name)
        if name in PATH_FIELDS:
            value, bad = _path(pipeline, name, asked, policy)
        elif name in FREE_NUMBERS:
            value, bad = _number(name, asked, *FREE_NUMBERS[name], policy)
        elif name == "continue_from":
            ok = asked is None or (isinstance(asked, str) and asked.strip() != "")
            value, bad = asked, None if ok else Violation(name, policy, asked, "must be null or a non-empty string")
        elif name in ALLOWED_LIST_FIELDS:
            allowed = _allowed(pipeline, name)
            value = asked
            bad = None if any(_same(asked, a) for a in allowed) else Violation(
                name, allowed, asked, f"{asked!r} is not allowed by {shown_file(pipeline)} (allowed: "
                                      f"{', '.join(map(repr, allowed))})")
        elif name in TIGHTEN_FIELDS or name == "require_approval":
            value, bad = _tighten(pipeline, name, asked, policy)
        elif name in defaults:
            value = asked
            bad = None if _same(asked, policy) else Violation(name, policy, asked, "is fixed by the pipeline file",
                                                              fixed=True)
        else:
            value, bad = asked, Violation(name, None, asked, f"is not a run field of {shown_file(pipeline)} "
                                                             f"(a run may set: {', '.join(RUN_FIELDS)})")
        if bad is not None:
            violations.append(bad)
        else:
            effective[name] = value
    if violations:
        raise PolicyViolation(shown_file(pipeline), violations)
    return effective


def run_param_schemas(pipeline: Pipeline) -> dict[str, dict]:
    """The trigger form's Param schema of each :data:`RUN_FIELDS` name, bounded by the policy (``Param(**schema)``
    kwargs: ``default``, ``type``, ``title``, ``description``, and ``minimum`` / ``maximum`` /
    ``exclusiveMinimum`` / ``exclusiveMaximum`` / ``enum`` / ``examples``).

    :param pipeline: the pipeline.
    """
    defaults = pipeline.defaults()
    file = shown_file(pipeline)
    roots = ", ".join(pipeline.spec.storage_roots())
    out: dict[str, dict] = {}
    for name in RUN_FIELDS:
        policy = defaults[name]
        schema: dict[str, Any] = {"default": policy, "title": TITLES[name]}
        if name in PATH_FIELDS:
            schema["type"] = ["null", "string"] if name == "system_instruction" else "string"
            schema["description"] = f"a path or gs:// URI under an allowed storage root ({roots})"
        elif name in FREE_NUMBERS:
            integer, bounds = FREE_NUMBERS[name]
            schema.update(type="integer" if integer else "number", **bounds)
            schema["description"] = f"any valid value (default from {file})"
        elif name == "continue_from":
            schema.update(type=["null", "string"], examples=["champion"],
                          description="empty: tune the base model; 'champion'; or projects/P/locations/L/models/M"
                                      "@version (Vertex)")
        elif name in ALLOWED_LIST_FIELDS:
            allowed = _allowed(pipeline, name)
            schema.update(type=["null", "string"] if None in allowed else "string", enum=allowed,
                          description=f"one of the values {file} allows")
        elif name == "require_approval":
            schema["type"] = "boolean"
            if policy:
                schema["enum"] = [True]
            schema["description"] = (f"{file} requires it" if policy else "may be turned on for this run")
        else:
            direction, integer, bounds = TIGHTEN_FIELDS[name]
            kind = "integer" if integer else "number"
            schema.update(bounds)
            if name == "max_cost" and pipeline.spec.policy.budget.price_per_million_training_tokens is None:
                schema = {"default": None, "title": TITLES[name], "type": "null", "enum": [None],
                          "description": f"{file} sets no price per million training tokens, so no cost limit"}
                out[name] = schema
                continue
            if policy is None:
                schema["type"] = ["null", kind]
                schema["description"] = f"{file} sets no limit; a run may set one"
            else:
                schema["type"] = kind
                bound = "minimum" if direction == ">=" else "maximum"
                schema[bound] = policy
                # the policy's value is valid, so the exclusive bound on the same side is implied
                schema.pop("exclusiveMinimum" if bound == "minimum" else "exclusiveMaximum", None)
                schema["description"] = (f"{direction} {policy!r} ({file}: {LOOSEN})")
        out[name] = schema
    return out

