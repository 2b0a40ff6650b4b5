"""The building blocks of the pipeline-file schema (:mod:`.spec`): the strict base model, the constrained string
types, the path rules (resolving local paths, "is under an allowed root") and the cron check.

Pure: pydantic, the standard library and ``gemini_tuning.core`` only.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo

from ..core.gcs_uri import GCS_PREFIX_PATTERN
from ..core.names import LOCATION_PATTERN, PROJECT_PATTERN

__all__ = ["GCS_PREFIX_PATTERN", "Location", "NonEmpty", "Project", "is_instruction_path", "is_under",
           "resolve_path", "validate_cron"]

# GCS_PREFIX_PATTERN (re-exported): core.gcs_uri's, the same rule as the ``gcs_prefix`` run Param

Location = Annotated[str, Field(pattern=LOCATION_PATTERN)]
Project = Annotated[str, Field(pattern=PROJECT_PATTERN)]
NonEmpty = Annotated[str, Field(min_length=1)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, validate_default=False)


# ------------------------------------------------------------------------------------------ paths
def is_instruction_path(value: str) -> bool:
    """Whether a system instruction names a file (the evaluate step's rule: a ``gs://`` URI, or one line of text
    ending in ``.txt``) rather than being the instruction's text itself.

    :param value: the ``system_instruction`` value.
    """
    return value.startswith("gs://") or (len(value) < 4096 and "\n" not in value and value.endswith(".txt"))


def resolve_path(value: str, base_dir: str | None) -> str:
    """A local path made absolute (against ``base_dir``, else the working directory) and normalized; a ``gs://`` URI
    as it is (a trailing ``/`` dropped).

    :param value: a local path or a ``gs://`` URI.
    :param base_dir: the folder relative paths are relative to (the YAML file's folder), or None.
    """
    if value.startswith("gs://"):
        return value.rstrip("/") if len(value) > len("gs://") else value
    if not os.path.isabs(value):
        value = os.path.join(base_dir or os.getcwd(), value)
    return os.path.normpath(value)


def _has_dot_segment(uri: str) -> bool:
    return any(part in (".", "..") for part in uri[len("gs://"):].split("/"))


def is_under(path: str, root: str) -> bool:
    """Whether ``path`` is ``root`` or inside it: both ``gs://`` (compared by ``/``-separated segments; a ``.`` or
    ``..`` segment is never under anything) or both local (normalized first, so ``..`` cannot climb out).

    :param path: a ``gs://`` URI or a local path (absolute, or relative to the working directory).
    :param root: an allowed storage root of the same kind.
    """
    if path.startswith("gs://") or root.startswith("gs://"):
        if not (path.startswith("gs://") and root.startswith("gs://")) or _has_dot_segment(path):
            return False
        root = root.rstrip("/")
        return path.rstrip("/") == root or path.startswith(root + "/")
    path, root = os.path.normpath(os.path.abspath(path)), os.path.normpath(os.path.abspath(root))
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _resolve(value: Any, info: ValidationInfo) -> Any:
    if not isinstance(value, str) or not value:
        return value
    return resolve_path(value, (info.context or {}).get("base_dir"))


# ------------------------------------------------------------------------------------------ schedule
_CRON_FIELDS = (("minute", 0, 59, None), ("hour", 0, 23, None), ("day of month", 1, 31, None),
                ("month", 1, 12, ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV",
                                  "DEC")),
                ("day of week", 0, 7, ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")))
_CRON_MACROS = ("@hourly", "@daily", "@weekly", "@monthly", "@yearly", "@annually", "@midnight")


def _cron_value(text: str, low: int, high: int, names: tuple[str, ...] | None) -> int | None:
    if text.isdigit():
        number = int(text)
        return number if low <= number <= high else None
    if names and text.upper() in names:
        return names.index(text.upper()) + (1 if names[0] == "JAN" else 0)
    return None


def validate_cron(value: str) -> str:
    """``value`` when it is a 5-field cron expression (minute hour day-of-month month day-of-week: numbers in range,
    ``*``, ``a-b``, ``/step``, lists, month and weekday names) or one of ``@hourly @daily @weekly @monthly
    @yearly``; else ``ValueError`` naming the field that is wrong.

    :param value: the cron string.
    """
    text = value.strip()
    if text in _CRON_MACROS:
        return text
    parts = text.split()
    if len(parts) != 5:
        raise ValueError(f"a cron expression has 5 fields (minute hour day-of-month month day-of-week), "
                         f"{value!r} has {len(parts)}")
    for part, (name, low, high, names) in zip(parts, _CRON_FIELDS, strict=True):
        for item in part.split(","):
            body, _, step = item.partition("/")
            if step and (not step.isdigit() or int(step) < 1):
                raise ValueError(f"cron {name} field {part!r}: the step after '/' must be a positive number")
            if body == "*":
                continue
            start, dash, end = body.partition("-")
            first = _cron_value(start, low, high, names)
            last = _cron_value(end, low, high, names) if dash else first
            if first is None or last is None or last < first:
                raise ValueError(f"cron {name} field {part!r}: expected *, a number {low}-{high}"
                                 f"{' or a name' if names else ''}, a range a-b, a step /n or a list")
    return " ".join(parts)
