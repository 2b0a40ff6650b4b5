"""What to tune: one spec for both services, validated before any paid call."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Literal

Backend = Literal["vertex", "gemini_api"]
BACKENDS = ("vertex", "gemini_api")
ADAPTER_SIZES = {1: "ADAPTER_SIZE_ONE", 2: "ADAPTER_SIZE_TWO", 4: "ADAPTER_SIZE_FOUR", 8: "ADAPTER_SIZE_EIGHT",
                 16: "ADAPTER_SIZE_SIXTEEN", 32: "ADAPTER_SIZE_THIRTY_TWO"}
_LABEL = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
#: A Model Registry model version (continuous tuning starts from one): ``projects/P/locations/L/models/M@1``.
MODEL_VERSION = re.compile(r"^projects/[^/]+/locations/[^/]+/models/[^/@]+@[^/@]+$")


@dataclass(frozen=True)
class TuningSpec:
    """What to tune, for either service; :meth:`validate` checks it before any paid call.

    :param backend: ``vertex`` or ``gemini_api``.
    :param base_model: the model to tune (e.g. ``gemini-2.5-flash``).
    :param training_uri: the ``gs://`` JSONL of training examples (Vertex format, or text_input/output for the
        Gemini API).
    :param validation_uri: Vertex only: the ``gs://`` JSONL of validation examples; None: no validation.
    :param training_sha256: the training data's content hash from the prepare step (part of the fingerprint).
    :param epochs: epochs to train, 1-100; None: the service's default.
    :param learning_rate_multiplier: scales the service's default learning rate; None: the default.
    :param learning_rate: Gemini API only: the learning rate itself (not with ``learning_rate_multiplier``).
    :param adapter_size: Vertex only: the LoRA adapter size, one of ``ADAPTER_SIZES`` (1, 2, 4, 8, 16, 32).
    :param batch_size: Gemini API only: the training batch size; None: the service's default.
    :param display_name: the tuned model's display name (at most 40 characters on the Gemini API).
    :param description: the tuned model's description (the Gemini API appends the identity marker).
    :param labels: Google labels for the Vertex job (lowercase keys and values); not in the fingerprint.
    :param continue_from: Vertex continuous tuning: the model version ``projects/P/locations/L/models/M@<versionId>``
        to start from (resolved before the create); None: tune the base model.
    :param checkpoint_id: with ``continue_from``: the checkpoint of that version to start from; None: its default.
    """

    backend: Backend
    base_model: str
    training_uri: str                          # gs://… JSONL (Vertex format, or text_input/output for the Gemini API)
    validation_uri: str | None = None
    training_sha256: str | None = None         # content hash from the prepare step: part of the fingerprint
    epochs: int | None = None
    learning_rate_multiplier: float | None = None
    learning_rate: float | None = None         # Gemini API only
    adapter_size: int | None = None            # Vertex: 1, 2, 4, 8, 16
    batch_size: int | None = None              # Gemini API only
    display_name: str | None = None
    description: str | None = None
    labels: dict = field(default_factory=dict)
    continue_from: str | None = None           # Vertex continuous tuning: the model version (M@<versionId>) ...
    checkpoint_id: str | None = None           # ... and its checkpoint to start from (resolved before the create)

    def validate(self) -> None:
        errors = []
        if self.backend not in BACKENDS:
            errors.append(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if not self.base_model:
            errors.append("base_model is required")
        if not str(self.training_uri).startswith("gs://"):
            errors.append(f"training_uri must be a gs:// URI, got {self.training_uri!r}")
        if self.epochs is not None and not 1 <= int(self.epochs) <= 100:
            errors.append(f"epochs must be within 1..100, got {self.epochs}")
        if self.learning_rate_multiplier is not None and self.learning_rate_multiplier <= 0:
            errors.append("learning_rate_multiplier must be > 0")
        if self.learning_rate is not None and self.learning_rate <= 0:
            errors.append("learning_rate must be > 0")
        if self.adapter_size is not None and self.adapter_size not in ADAPTER_SIZES:
            errors.append(f"adapter_size must be one of {sorted(ADAPTER_SIZES)}, got {self.adapter_size}")
        if self.continue_from is not None:
            if self.backend != "vertex":
                errors.append("continue_from (continuous tuning) applies to the Vertex backend only")
            elif not MODEL_VERSION.match(self.continue_from):
                errors.append(f"continue_from must be resolved to a model version projects/P/locations/L/models/"
                              f"M@<version> before the create, got {self.continue_from!r}")
        elif self.checkpoint_id is not None:
            errors.append("checkpoint_id needs continue_from")
        if self.backend == "vertex":
            if self.learning_rate is not None or self.batch_size is not None:
                errors.append("learning_rate and batch_size apply to the Gemini API backend only; "
                              "Vertex takes learning_rate_multiplier and adapter_size")
        elif self.backend == "gemini_api":
            if self.adapter_size is not None or self.validation_uri:
                errors.append("adapter_size and validation data apply to the Vertex backend only")
            if self.learning_rate is not None and self.learning_rate_multiplier is not None:
                errors.append("set learning_rate or learning_rate_multiplier, not both")
            if self.display_name and len(self.display_name) > 40:
                errors.append("display_name must be at most 40 characters on the Gemini API")
        for k, v in (self.labels or {}).items():
            if not _LABEL.match(str(k)) or not _LABEL_VALUE.match(str(v)):
                errors.append(f"label {k!r}={v!r} is not a valid Google label (lowercase letters, digits, _ and -)")
        if errors:
            raise ValueError("invalid tuning spec: " + "; ".join(errors))

    def fingerprint_inputs(self) -> dict:
        """Everything that changes what would be trained (not labels, names or descriptions)."""
        d = asdict(self)
        for k in ("labels", "display_name", "description"):
            d.pop(k)
        return d
