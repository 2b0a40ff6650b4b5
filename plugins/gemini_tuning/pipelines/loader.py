"""Reading pipeline files: one YAML file per pipeline, validated against :class:`~.spec.PipelineSpec`, every error
of a file reported at once with the line it is on (from the YAML node marks of ``yaml.compose``).

:func:`load_file` parses one file (:class:`Pipeline`, or :class:`PipelineFileError` with all its errors);
:func:`load_folder` parses every ``*.yaml`` / ``*.yml`` of a folder (the good ones load even when others are
broken; a duplicate id is an error of the later file). No network, no metadata DB: it is called at DAG parse time.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import ValidationError

from ..core.names import LOCATION_RULE, PROJECT_RULE
from .spec import SCHEDULE_TAGS, DataSpec, GoogleSpec, PipelineSpec, PolicySpec, StorageSpec, section_rule_errors

__all__ = ["FolderResult", "Pipeline", "PipelineError", "PipelineFileError", "load_file", "load_folder"]

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
EXTENSIONS = (".yaml", ".yml")
# the flat run-Param name → the spec's dotted path (``dags/gemini_tuning_pipeline.py`` PARAMS)
FLAT_FIELDS: dict[str, str] = {
    "backend": "google.backend", "project_id": "google.project", "location": "google.location",
    "base_model": "google.base_model", "gcs_prefix": "storage.gcs_prefix",
    "training_data": "data.training_data", "validation_fraction": "data.validation_fraction",
    "eval_prompts": "data.eval_prompts", "system_instruction": "data.system_instruction",
    "epochs": "tuning.epochs", "learning_rate_multiplier": "tuning.learning_rate_multiplier",
    "adapter_size": "tuning.adapter_size", "batch_size": "tuning.batch_size", "display_name": "tuning.display_name",
    "job_timeout_hours": "tuning.job_timeout_hours", "poll_policy": "tuning.poll_policy",
    "max_queue_hours": "tuning.max_queue_hours", "retirement_warn_days": "tuning.retirement_warn_days",
    "on_fingerprint_change": "tuning.on_fingerprint_change", "continue_from": "tuning.continue_from",
    "max_training_tokens": "policy.budget.max_training_tokens", "max_cost": "policy.budget.max_cost",
    "price_per_million_training_tokens": "policy.budget.price_per_million_training_tokens",
    "eval_mode": "evaluation.mode", "compare_base_model": "evaluation.compare_base_model",
    "evaluate_checkpoints": "evaluation.evaluate_checkpoints", "temperature": "evaluation.temperature",
    "max_output_tokens": "evaluation.max_output_tokens", "eval_rpm": "evaluation.rpm",
    "eval_concurrency": "evaluation.concurrency", "judge": "evaluation.judge",
    "judge_model": "evaluation.judge_model", "judge_pointwise_template": "evaluation.judge_pointwise_template",
    "judge_pairwise_template": "evaluation.judge_pairwise_template",
    "gate_min_prompts": "policy.gate.min_prompts", "gate_max_error_rate": "policy.gate.max_error_rate",
    "gate_primary_metric": "policy.gate.primary_metric", "gate_min_score": "policy.gate.min_score",
    "gate_min_margin": "policy.gate.min_margin", "gate_confidence": "policy.gate.confidence",
    "gate_pairwise_min_decisive": "policy.gate.pairwise_min_decisive",
    "gate_pairwise_margin": "policy.gate.pairwise_margin",
    "gate_max_dropped_fraction": "policy.gate.max_dropped_fraction", "require_approval": "policy.require_approval",
    "approval_timeout_hours": "policy.approval_timeout_hours",
    "on_base_retirement": "policy.on_base_retirement",
}


@dataclass
class PipelineError:
    """One thing wrong with a pipeline file.

    :param file: the file's path (as given to the loader).
    :param line: the 1-based line the error is on, or None when unknown.
    :param field: the dotted field path (``policy.gate.min_score``), ``""`` for the whole file.
    :param rule: what is wrong, in words.
    """

    file: str
    line: int | None
    field: str
    rule: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.field}: {self.rule}"

    def to_dict(self) -> dict:
        """``{file, line, field, rule}`` (for ``--json``)."""
        return {"file": self.file, "line": self.line, "field": self.field, "rule": self.rule}


class PipelineFileError(Exception):
    """A pipeline file that did not load, with every error found in it.

    :param file: the file's path.
    :param errors: its :class:`PipelineError` list (at least one).
    """

    def __init__(self, file: str, errors: list[PipelineError]):
        self.file = file
        self.errors = list(errors)
        super().__init__("\n".join(str(e) for e in self.errors))

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _get(spec: PipelineSpec, dotted: str) -> Any:
    value: Any = spec
    for part in dotted.split("."):
        value = getattr(value, part)
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json", exclude_none=True)
    return value


@dataclass(frozen=True)
class Pipeline:
    """A pipeline file as loaded.

    :param spec: the validated :class:`~.spec.PipelineSpec`.
    :param file: the file's absolute path.
    :param revision: sha256 hex of the file's bytes.
    :param policy_hash: sha256 hex of the canonical JSON (sorted keys, no spaces) of
        ``spec.policy.model_dump(mode="json")``.
    """

    spec: PipelineSpec
    file: str
    revision: str
    policy_hash: str

    @property
    def dag_id(self) -> str:
        """``gemini_tuning__<id>``."""
        return f"gemini_tuning__{self.spec.id}"

    @property
    def rollback_dag_id(self) -> str:
        """``gemini_tuning__<id>__rollback``."""
        return f"gemini_tuning__{self.spec.id}__rollback"

    @staticmethod
    def hash_policy(spec: PipelineSpec) -> str:
        """The policy hash of ``spec``.

        :param spec: a validated spec.
        """
        return hashlib.sha256(_canonical(spec.policy.model_dump(mode="json")).encode("utf-8")).hexdigest()

    def defaults(self) -> dict:
        """The file's values under the run Params' flat names (``PARAMS`` of ``dags/gemini_tuning_pipeline.py``):
        ``{"backend": ..., "gate_min_score": ..., ...}`` (``poll_policy``: a dict)."""
        return {name: _get(self.spec, dotted) for name, dotted in FLAT_FIELDS.items()}

    def to_record(self) -> dict:
        """A JSON-serializable record (``{id, file, revision, policy_hash, spec}``) that :meth:`from_record` turns
        back into this pipeline, without reading the file (the DAG carries it to its ``check_policy`` step)."""
        return {"id": self.spec.id, "file": self.file, "revision": self.revision, "policy_hash": self.policy_hash,
                "spec": self.spec.model_dump(mode="json")}

    @classmethod
    def from_record(cls, record: dict) -> Pipeline:
        """The pipeline of a :meth:`to_record` record (validated again; its paths are already absolute).

        :param record: ``{id, file, revision, policy_hash, spec}``.
        :raises ValueError: the spec does not validate, or the policy hash does not match it.
        """
        spec = PipelineSpec.model_validate(record["spec"], context={"base_dir": os.path.dirname(record["file"])})
        policy_hash = cls.hash_policy(spec)
        if record.get("policy_hash") not in (None, policy_hash):
            raise ValueError(f"pipeline record {record.get('id')!r}: its policy does not match its policy_hash")
        return cls(spec=spec, file=record["file"], revision=record["revision"], policy_hash=policy_hash)


@dataclass
class FolderResult:
    """What :func:`load_folder` found.

    :param pipelines: the files that loaded, sorted by id.
    :param errors: one :class:`PipelineFileError` per file that did not.
    """

    pipelines: list[Pipeline] = field(default_factory=list)
    errors: list[PipelineFileError] = field(default_factory=list)


# ------------------------------------------------------------------------------------------ line numbers
def _line_map(node: yaml.Node, path: tuple, lines: dict, duplicates: list) -> None:
    """path (tuple of keys / indexes) → 1-based line; for a mapping key, the key's line."""
    if isinstance(node, yaml.MappingNode):
        seen: set = set()
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if key is None:
                continue
            if key in seen:
                duplicates.append((path + (key,), key_node.start_mark.line + 1))
            seen.add(key)
            lines[path + (key,)] = key_node.start_mark.line + 1
            _line_map(value_node, path + (key,), lines, duplicates)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[path + (index,)] = item.start_mark.line + 1
            _line_map(item, path + (index,), lines, duplicates)


def _line_of(lines: dict, loc: tuple) -> int | None:
    loc = tuple(loc)
    while loc:
        for candidate in (loc, tuple(str(p) for p in loc)):
            if candidate in lines:
                return lines[candidate]
        loc = loc[:-1]
    return lines.get(())


def _loc_for_field(loc: tuple) -> tuple:
    # drop the union-member tags pydantic adds to a path (the schedule's cron-string / schedule-mapping)
    return tuple(p for p in loc if p not in SCHEDULE_TAGS)


#: the words for a pattern mismatch, by the field's last name
PATTERN_RULES = {
    "id": "must be a lowercase letter then up to 39 lowercase letters, digits or '_'",
    "project": PROJECT_RULE, "allowed_projects": PROJECT_RULE,
    "location": LOCATION_RULE, "allowed_locations": LOCATION_RULE,
    "gcs_prefix": "must be gs://BUCKET[/PATH] (a bucket name of 3-222 lowercase letters, digits, '.', '_', '-')",
}


def _message(error: dict) -> str:
    kind, msg = error["type"], error["msg"]
    if kind == "extra_forbidden":
        return f"unknown key {error['loc'][-1]!r} (not a field of this section)"
    if kind == "missing":
        return "is required"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if kind == "string_pattern_mismatch":
        names = [p for p in error["loc"] if isinstance(p, str)]
        msg = PATTERN_RULES.get(names[-1] if names else "", msg)
    value = error.get("input")
    if kind not in ("missing",) and not isinstance(value, dict | list):
        text = repr(value)
        msg += f" (got {text if len(text) <= 80 else text[:77] + '...'})"
    return msg


def _section_rules(data: dict, context: dict) -> list:
    """The cross-field rules over the sections that validate on their own (the file has schema errors)."""
    sections: dict[str, Any] = {}
    for name, model, required in (("google", GoogleSpec, True), ("storage", StorageSpec, True),
                                  ("data", DataSpec, True), ("policy", PolicySpec, False)):
        raw = data.get(name)
        if raw is None and not required:
            raw = {}
        try:
            sections[name] = model.model_validate(raw, context=context) if isinstance(raw, dict) else None
        except ValidationError:
            sections[name] = None
    return section_rule_errors(**sections)


def _parse(path: str, text: str) -> tuple[Any, dict, list]:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        lines: dict = {}
        duplicates: list = []
        if node is not None:
            lines[()] = node.start_mark.line + 1
            _line_map(node, (), lines, duplicates)
        data = loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()
    return data, lines, duplicates


def _id_line(path: str) -> int | None:
    try:
        with open(path, encoding="utf-8") as fh:
            return _line_of(_parse(path, fh.read())[1], ("id",))
    except (OSError, ValueError, yaml.YAMLError):
        return None


def load_file(path: str | os.PathLike) -> Pipeline:
    """One pipeline file, validated.

    :param path: the YAML file (its stem must be the pipeline's ``id``).
    :raises PipelineFileError: the file cannot be read, is not YAML (with the line of the syntax error), is not a
        mapping, or breaks the schema or a rule; every error of the file at once.
    """
    path = os.fspath(path)
    shown = path
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise PipelineFileError(shown, [PipelineError(shown, None, "", f"cannot be read: {exc.strerror}")]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PipelineFileError(shown, [PipelineError(shown, None, "", f"is not UTF-8 text: {exc.reason}")]) from None
    try:
        data, lines, duplicates = _parse(path, text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context", None)
        rule = f"YAML syntax error: {problem}" + (f" ({context})" if context else "")
        raise PipelineFileError(shown, [PipelineError(shown, mark.line + 1 if mark else None, "", rule)]) from None
    if not isinstance(data, dict):
        kind = "empty" if data is None else f"a {type(data).__name__}"
        raise PipelineFileError(shown, [PipelineError(shown, lines.get(()), "",
                                                      f"a pipeline file is a mapping of sections, this one is "
                                                      f"{kind}")])
    errors = [PipelineError(shown, line, ".".join(map(str, loc)), "duplicate key (YAML keeps only the last)")
              for loc, line in duplicates]
    stem = os.path.splitext(os.path.basename(path))[0]
    if isinstance(data.get("id"), str) and data["id"] != stem:
        errors.append(PipelineError(shown, _line_of(lines, ("id",)), "id",
                                    f"must equal the file's name without extension ({stem!r}), not {data['id']!r}"))
    rules: list = []
    spec = None
    try:
        spec = PipelineSpec.model_validate(data, context={"base_dir": os.path.dirname(os.path.abspath(path)),
                                                          "rule_errors": rules})
    except ValidationError as exc:
        seen: set = set()
        for error in exc.errors():
            loc = _loc_for_field(error["loc"])
            field_path = ".".join(map(str, loc))
            message = _message(error)
            if (field_path, message) in seen:
                continue
            seen.add((field_path, message))
            errors.append(PipelineError(shown, _line_of(lines, loc), field_path, message))
    if spec is None:
        rules = _section_rules(data, context={"base_dir": os.path.dirname(os.path.abspath(path))})
    for loc, rule in rules:
        errors.append(PipelineError(shown, _line_of(lines, loc), ".".join(loc), rule))
    if errors or spec is None:
        errors.sort(key=lambda e: (e.line is None, e.line or 0))
        raise PipelineFileError(shown, errors)
    return Pipeline(spec=spec, file=os.path.abspath(path), revision=hashlib.sha256(raw).hexdigest(),
                    policy_hash=Pipeline.hash_policy(spec))


def load_folder(folder: str | os.PathLike) -> FolderResult:
    """Every pipeline file of a folder (``*.yaml``, ``*.yml``; not its subfolders).

    :param folder: the pipelines folder (missing: an empty result).
    :return: the pipelines that loaded, sorted by id, and one :class:`PipelineFileError` per file that did not (a
        second file with an id already loaded, in file-name order, is one).
    """
    folder = os.fspath(folder)
    result = FolderResult()
    try:
        names = sorted(n for n in os.listdir(folder) if n.endswith(EXTENSIONS) and not n.startswith("."))
    except (FileNotFoundError, NotADirectoryError):
        return result
    by_id: dict[str, Pipeline] = {}
    for name in names:
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            continue
        try:
            pipeline = load_file(path)
        except PipelineFileError as exc:
            result.errors.append(exc)
            continue
        first = by_id.get(pipeline.spec.id)
        if first is not None:
            rule = f"duplicate id {pipeline.spec.id!r}: {os.path.basename(first.file)} already defines it"
            result.errors.append(PipelineFileError(path, [PipelineError(path, _id_line(path), "id", rule)]))
            continue
        by_id[pipeline.spec.id] = pipeline
    result.pipelines = [by_id[k] for k in sorted(by_id)]
    return result
