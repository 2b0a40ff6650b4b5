"""The schema of one pipeline file (``pipelines/<id>.yaml``): pydantic v2 models, ``extra="forbid"`` and strict types
everywhere (an unknown key is an error naming it; ``"3"`` is not a number, ``true`` is not an integer).

Ranges, enums and defaults are those of the run Params of ``dags/gemini_tuning_pipeline.py`` (``PARAMS``), except
``base_model`` and ``judge_model`` (default ``gemini-3.5-flash``). Relative paths (``data.*``, the local entries of
``policy.allowed_storage_roots``) resolve against the folder given in the validation context (``base_dir``: the
YAML file's folder) and are stored absolute and normalized.

The cross-field rules (:func:`rule_errors`) run after the sections validated: ``gcs_prefix`` and every data path
under one allowed storage root, the location and the base model in their allowed lists (when those are non-empty),
``max_cost`` only with ``price_per_million_training_tokens``. ``id`` equal to the file's stem is the loader's rule
(the spec does not know its file).

Pure: pydantic, the standard library and ``gemini_tuning.core`` only.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, ValidationInfo, field_validator, model_validator

from ..core.gcs_uri import split_gs_uri
from ..core.names import LOCATION_PATTERN, PROJECT_PATTERN, RESOURCE_KINDS
from ..core.tuning import BACKENDS
from .spec_base import (
    GCS_PREFIX_PATTERN,
    Location,
    NonEmpty,
    Project,
    _has_dot_segment,
    _Model,
    _resolve,
    is_instruction_path,
    is_under,
    resolve_path,
    validate_cron,
)
from .spec_policy import BudgetSpec, GateSpec, PolicySpec

__all__ = ["ID_PATTERN", "GCS_PREFIX_PATTERN", "DEFAULT_MODEL", "DEFAULT_SCHEDULE", "AccessVerb", "BudgetSpec",
           "DataSpec", "EvaluationSpec", "GateSpec", "GoogleSpec", "NotificationsSpec", "PipelineSpec", "PolicySpec",
           "PollPolicySpec", "ScheduleSpec", "SmtpSpec", "StorageSpec", "TuningSpec", "WebhookSpec",
           "is_instruction_path", "is_under", "resolve_path", "rule_errors", "section_rule_errors",
           "validate_cron"]

#: a pipeline id: also part of DAG ids, asset names and tags
ID_PATTERN = r"^[a-z][a-z0-9_]{0,39}$"
DEFAULT_MODEL = "gemini-3.5-flash"
DEFAULT_SCHEDULE = "0 3 * * 1"
_BASE_MODEL_RE = re.compile(rf"^(?:{RESOURCE_KINDS['base_model'][1]})$")
_LOCATION_RE = re.compile(LOCATION_PATTERN)
_PROJECT_RE = re.compile(PROJECT_PATTERN)

AccessVerb = Literal["read", "trigger", "approve"]
Event = Literal["promote", "delete", "approval_needed", "failure"]
EVENTS: tuple[str, ...] = ("promote", "delete", "approval_needed", "failure")


# ------------------------------------------------------------------------------------------ schedule
class ScheduleSpec(_Model):
    """A schedule by cron, by an Airflow Asset, or either (whichever comes first).

    :param cron: a cron expression (:func:`validate_cron`), or None.
    :param asset: the name of an Airflow Asset whose events trigger a run, or None.
    """

    cron: str | None = None
    asset: NonEmpty | None = None

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        return None if value is None else validate_cron(value)

    @model_validator(mode="after")
    def _one(self) -> ScheduleSpec:
        if self.cron is None and self.asset is None:
            raise ValueError("a schedule mapping needs cron, asset or both (null: no schedule)")
        return self


# ------------------------------------------------------------------------------------------ sections
class GoogleSpec(_Model):
    """Where and what is tuned.

    :param backend: ``vertex`` (Vertex AI tuningJobs) or ``gemini_api``.
    :param project: the Google Cloud project (None: the connection's).
    :param location: a Vertex AI region.
    :param base_model: the model tuned (a base model name of ``core.names``).
    """

    backend: Literal[BACKENDS] = "vertex"  # type: ignore[valid-type]
    project: Project | None = None
    location: Location = "us-central1"
    base_model: str = DEFAULT_MODEL

    @field_validator("base_model")
    @classmethod
    def _base_model(cls, value: str) -> str:
        if ".." in value or not _BASE_MODEL_RE.fullmatch(value):
            raise ValueError(f"must be {RESOURCE_KINDS['base_model'][0]}")
        return value


class StorageSpec(_Model):
    """The pipeline's own GCS prefix: datasets, job state, results, reports and the champion pointer.

    :param gcs_prefix: ``gs://bucket[/path]`` (a trailing ``/`` is dropped; no ``.`` or ``..`` segment).
    """

    gcs_prefix: Annotated[str, Field(pattern=GCS_PREFIX_PATTERN)]

    @field_validator("gcs_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if _has_dot_segment(value) or "//" in value[len("gs://"):]:
            raise ValueError("a GCS prefix has no '.', '..' or empty path segment")
        split_gs_uri(value)        # the bucket rule the GCS backend applies (no '..' in the name): ValueError
        return value.rstrip("/")


class DataSpec(_Model):
    """The inputs (local paths relative to the YAML file, or ``gs://`` URIs).

    :param training_data: a JSONL (optionally gzip) training set.
    :param eval_prompts: the evaluation prompt set (JSONL).
    :param system_instruction: the instruction's text, or a ``.txt`` path / ``gs://`` URI of it, or None.
    :param validation_fraction: the share of the training set held out for validation (0-0.5).
    """

    training_data: NonEmpty
    eval_prompts: NonEmpty
    system_instruction: str | None = None
    validation_fraction: Annotated[float, Field(ge=0, le=0.5)] = 0.0

    @field_validator("training_data", "eval_prompts")
    @classmethod
    def _paths(cls, value: str, info: ValidationInfo) -> str:
        return _resolve(value, info)

    @field_validator("system_instruction")
    @classmethod
    def _instruction(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _resolve(value, info) if value and is_instruction_path(value) else value

    def paths(self) -> dict[str, str]:
        """The data fields that name a file: name → path or URI (an inline system instruction is not one)."""
        out = {"training_data": self.training_data, "eval_prompts": self.eval_prompts}
        if self.system_instruction and is_instruction_path(self.system_instruction):
            out["system_instruction"] = self.system_instruction
        return out


class PollPolicySpec(_Model):
    """How often the tuning job's status is asked (``core.polling.PollPolicy``), in seconds.

    :param initial_seconds: the first interval.
    :param min_seconds: the shortest interval (near the end).
    :param max_seconds: the longest interval (mid-job).
    :param fallback_max_seconds: the longest interval without progress information (None: the default).
    """

    initial_seconds: Annotated[float, Field(gt=0, le=3600)] = 10.0
    min_seconds: Annotated[float, Field(gt=0, le=3600)] = 15.0
    max_seconds: Annotated[float, Field(gt=0, le=3600)] = 300.0
    fallback_max_seconds: Annotated[float, Field(gt=0, le=3600)] | None = None

    @model_validator(mode="after")
    def _order(self) -> PollPolicySpec:
        if self.min_seconds > self.max_seconds:
            raise ValueError("min_seconds must not exceed max_seconds")
        return self


class TuningSpec(_Model):
    """The tuning job.

    :param epochs: 1-100.
    :param learning_rate_multiplier: > 0, ≤ 100 (Vertex).
    :param adapter_size: 1, 2, 4, 8 or 16 (Vertex).
    :param batch_size: 1-64 or None (Gemini API).
    :param display_name: the tuned model's display name (≤ 40 characters).
    :param continue_from: None, ``champion`` or a Vertex model resource name (Vertex).
    :param job_timeout_hours: > 0, ≤ 168: how long the job may tune, counted (Vertex) from its first ``TUNING``
        sub-state, so quota and capacity waits are not charged to it.
    :param max_queue_hours: > 0, ≤ 168, or None (no limit): the most hours a Vertex job may wait for quota or
        capacity (summed); past it the run fails and the job is cancelled.
    :param retirement_warn_days: 0-365: warn this many days before the base model's tuning block or retirement
        (the model lifecycle table).
    :param on_fingerprint_change: ``cancel_and_resubmit`` or ``fail``.
    :param poll_policy: :class:`PollPolicySpec`.
    """

    epochs: Annotated[int, Field(ge=1, le=100)] = 3
    learning_rate_multiplier: Annotated[float, Field(gt=0, le=100)] = 1.0
    adapter_size: Literal[1, 2, 4, 8, 16] = 4
    batch_size: Annotated[int, Field(ge=1, le=64)] | None = None
    display_name: Annotated[str, Field(min_length=1, max_length=40)] = "support-router"
    continue_from: NonEmpty | None = None
    job_timeout_hours: Annotated[float, Field(gt=0, le=168)] = 24.0
    max_queue_hours: Annotated[float, Field(gt=0, le=168)] | None = None
    retirement_warn_days: Annotated[int, Field(ge=0, le=365)] = 60
    on_fingerprint_change: Literal["cancel_and_resubmit", "fail"] = "cancel_and_resubmit"
    poll_policy: PollPolicySpec = Field(default_factory=PollPolicySpec)


class EvaluationSpec(_Model):
    """How the candidate is evaluated.

    :param mode: ``online`` or ``batch``.
    :param judge: ``none``, ``pointwise``, ``pairwise`` or ``both`` (the autorater).
    :param judge_model: the autorater model.
    :param compare_base_model: also evaluate the untuned base model.
    :param evaluate_checkpoints: evaluate every checkpoint (Vertex, online).
    :param temperature: 0-2.
    :param max_output_tokens: 1-8192.
    :param rpm: requests per minute per model (> 0).
    :param concurrency: 1-256.
    :param judge_pointwise_template: the pointwise prompt template, or None (the default rubric).
    :param judge_pairwise_template: the pairwise prompt template, or None.
    """

    mode: Literal["online", "batch"] = "online"
    judge: Literal["none", "pointwise", "pairwise", "both"] = "none"
    judge_model: NonEmpty = DEFAULT_MODEL
    compare_base_model: bool = False
    evaluate_checkpoints: bool = False
    temperature: Annotated[float, Field(ge=0, le=2)] = 0.0
    max_output_tokens: Annotated[int, Field(ge=1, le=8192)] = 256
    rpm: Annotated[float, Field(gt=0)] = 600.0
    concurrency: Annotated[int, Field(ge=1, le=256)] = 16
    judge_pointwise_template: str | None = None
    judge_pairwise_template: str | None = None


class SmtpSpec(_Model):
    """E-mail notifications.

    :param to: one or more addresses.
    :param conn_id: the Airflow SMTP connection.
    :param from_email: the sender (None: ``[email] from_email`` or the connection's).
    """

    to: Annotated[list[NonEmpty], Field(min_length=1)]
    conn_id: NonEmpty = "smtp_default"
    from_email: NonEmpty | None = None


class WebhookSpec(_Model):
    """A JSON POST to an Airflow HTTP connection.

    :param conn_id: the connection.
    :param endpoint: an optional path under the connection's host.
    """

    conn_id: NonEmpty
    endpoint: str | None = None


class NotificationsSpec(_Model):
    """Which events are notified, and through which channels (``gemini_tuning.notifications``).

    :param events: some of ``promote``, ``delete``, ``approval_needed``, ``failure``.
    :param smtp: :class:`SmtpSpec` or None.
    :param webhook: :class:`WebhookSpec` or None.
    """

    events: list[Event] = Field(default_factory=lambda: list(EVENTS))
    smtp: SmtpSpec | None = None
    webhook: WebhookSpec | None = None


def _schedule_kind(value: Any) -> str | None:
    if isinstance(value, str):
        return "cron-string"
    if isinstance(value, dict | ScheduleSpec):
        return "schedule-mapping"
    return None


#: the tags of the schedule union (the loader drops them from field paths)
SCHEDULE_TAGS = ("cron-string", "schedule-mapping")
Schedule = Annotated[Annotated[str, Tag("cron-string")] | Annotated[ScheduleSpec, Tag("schedule-mapping")],
                     Discriminator(_schedule_kind, custom_error_type="schedule_type",
                                   custom_error_message="expected a cron string, a mapping {cron, asset} or null")]


class PipelineSpec(_Model):
    """One pipeline file.

    :param id: ``^[a-z][a-z0-9_]{0,39}$``; the loader requires it to equal the file's stem.
    :param description: shown as the DAG's description.
    :param owners: e-mail addresses or team names.
    :param tags: extra DAG tags.
    :param schedule: a cron string, a :class:`ScheduleSpec` (cron and/or asset), or None (manual only).
    :param google: :class:`GoogleSpec` (required).
    :param storage: :class:`StorageSpec` (required).
    :param data: :class:`DataSpec` (required).
    :param tuning: :class:`TuningSpec`.
    :param evaluation: :class:`EvaluationSpec`.
    :param policy: :class:`PolicySpec`.
    :param access: role name → ``read`` / ``trigger`` / ``approve`` (``pipelines.access``).
    :param notifications: :class:`NotificationsSpec` or None (no notifications).

    Validated with ``context={"base_dir": folder}`` relative paths resolve against ``folder``; with
    ``context={"rule_errors": []}`` the cross-field rules are appended to that list instead of raised.
    """

    id: Annotated[str, Field(pattern=ID_PATTERN)]
    description: str = ""
    owners: list[NonEmpty] = Field(default_factory=list)
    tags: list[NonEmpty] = Field(default_factory=list)
    schedule: Schedule | None = DEFAULT_SCHEDULE
    google: GoogleSpec
    storage: StorageSpec
    data: DataSpec
    tuning: TuningSpec = Field(default_factory=TuningSpec)
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    policy: PolicySpec = Field(default_factory=PolicySpec)
    access: dict[NonEmpty, list[AccessVerb]] = Field(default_factory=dict)
    notifications: NotificationsSpec | None = None

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: Any) -> Any:
        return validate_cron(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _rules(self, info: ValidationInfo) -> PipelineSpec:
        errors = rule_errors(self)
        sink = (info.context or {}).get("rule_errors")
        if sink is not None:
            sink.extend(errors)
        elif errors:
            raise ValueError("; ".join(f"{'.'.join(loc)}: {rule}" for loc, rule in errors))
        return self

    def storage_roots(self) -> list[str]:
        """The allowed storage roots in effect: ``policy.allowed_storage_roots``, or ``[gcs_prefix]`` when empty."""
        return list(self.policy.allowed_storage_roots) or [self.storage.gcs_prefix]


def _roots_text(roots: list[str]) -> str:
    return ", ".join(roots) if roots else "none"


def rule_errors(spec: PipelineSpec) -> list[tuple[tuple[str, ...], str]]:
    """The cross-field rules a schema-valid spec breaks: ``[(field path, rule)]``, all of them.

    :param spec: a spec whose sections validated.
    """
    return section_rule_errors(spec.google, spec.storage, spec.data, spec.policy)


def section_rule_errors(google: GoogleSpec | None, storage: StorageSpec | None, data: DataSpec | None,
                        policy: PolicySpec | None) -> list[tuple[tuple[str, ...], str]]:
    """The cross-field rules, over the sections that validated (a rule that needs a section that did not is
    skipped): ``[(field path, rule)]``.

    :param google: the ``google`` section, or None.
    :param storage: the ``storage`` section, or None.
    :param data: the ``data`` section, or None.
    :param policy: the ``policy`` section, or None.
    """
    errors: list[tuple[tuple[str, ...], str]] = []
    if policy is None:
        return errors
    roots = list(policy.allowed_storage_roots) or ([storage.gcs_prefix] if storage else [])
    if storage and policy.allowed_storage_roots and not any(is_under(storage.gcs_prefix, r) for r in roots):
        errors.append((("storage", "gcs_prefix"), f"{storage.gcs_prefix!r} is not under an allowed storage "
                                                  f"root (policy.allowed_storage_roots: {_roots_text(roots)})"))
    if data and roots:
        for name, path in data.paths().items():
            if not any(is_under(path, r) for r in roots):
                errors.append((("data", name), f"{path!r} is not under an allowed storage root "
                                               f"(policy.allowed_storage_roots: {_roots_text(roots)})"))
    if google and policy.allowed_locations and google.location not in policy.allowed_locations:
        errors.append((("google", "location"), f"{google.location!r} is not in policy.allowed_locations "
                                               f"({', '.join(policy.allowed_locations)})"))
    models = policy.allowed_base_models
    if google and models and google.base_model not in models:
        errors.append((("google", "base_model"), f"{google.base_model!r} is not in "
                                                 f"policy.allowed_base_models ({', '.join(models)})"))
    budget = policy.budget
    if budget.max_cost is not None and budget.price_per_million_training_tokens is None:
        errors.append((("policy", "budget", "max_cost"), "max_cost needs price_per_million_training_tokens "
                                                         "(no price is built in)"))
    return errors
