"""The options of one dataset run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .limits import Target

__all__ = ["DatasetOptions"]


@dataclass(frozen=True)
class DatasetOptions:
    """How :func:`~gemini_tuning.core.dataset.prepare_dataset` validates and converts a file; checked on creation
    (``ValueError`` for a value outside the allowed ones).

    :param target: ``vertex`` or ``gemini_api``: the output format and the target's rules.
    :param validation_fraction: in [0, 1): the share of examples split off into validation, by content hash.
    :param duplicates: ``warn`` | ``fail`` | ``drop`` a repeated example (the first occurrence is kept).
    :param unknown_fields: ``warn`` (the field is dropped) | ``fail`` on a field the format does not define.
    :param leakage: ``off`` | ``warn`` | ``fail`` when a training user prompt equals an evaluation prompt.
    :param max_errors: stop reading after this many errors; warnings are listed this many times per rule.
    :param epochs: for the billable-token estimate only.
    """

    target: Target = "vertex"
    validation_fraction: float = 0.0
    duplicates: Literal["warn", "fail", "drop"] = "warn"
    unknown_fields: Literal["warn", "fail"] = "warn"
    leakage: Literal["off", "warn", "fail"] = "warn"
    max_errors: int = 50
    epochs: int = 1  # for the billable-token estimate only

    def __post_init__(self) -> None:
        def check(name: str, allowed: tuple) -> None:
            if getattr(self, name) not in allowed:
                raise ValueError(f"DatasetOptions.{name} must be one of {allowed}, got {getattr(self, name)!r}")

        check("target", ("vertex", "gemini_api"))
        check("duplicates", ("warn", "fail", "drop"))
        check("unknown_fields", ("warn", "fail"))
        check("leakage", ("off", "warn", "fail"))
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError(f"validation_fraction must be in [0, 1), got {self.validation_fraction!r}")
        if int(self.max_errors) < 1:
            raise ValueError(f"max_errors must be >= 1, got {self.max_errors!r}")
        if int(self.epochs) < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs!r}")
