"""Line-numbered findings shared by every input validator (training data, prompt sets)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Issue:
    """One finding: which file, which line (1-based; None for whole-file rules), which rule, what is wrong.

    :param file: the input file (path or URI) the finding is in.
    :param line: the 1-based line number; None for a whole-file rule.
    :param rule: the rule's short name, shown in brackets.
    :param message: what is wrong on that line, in one sentence.
    :param severity: ``error`` (fatal: :class:`DataValidationError`) or ``warning`` (reported, not fatal).
    """

    file: str
    line: int | None
    rule: str
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: [{self.rule}] {self.message}"

    def to_dict(self) -> dict:
        return asdict(self)


class DataValidationError(ValueError):
    """Raised when input data breaks at least one fatal rule. Carries every issue found (up to a bound).

    :param issues: every issue found, warnings included (kept in :attr:`issues`; the message lists the errors).
    :param truncated: True: the validator stopped collecting at its limit, so there may be more.
    :param max_shown: the most errors listed in the message ("... and N more" after them).
    """

    def __init__(self, issues: list[Issue], *, truncated: bool = False, max_shown: int = 20):
        self.issues = list(issues)
        self.truncated = truncated
        errors = [i for i in self.issues if i.severity == "error"]
        head = f"{len(errors)} error(s)" + (" (stopped collecting: limit reached)" if truncated else "")
        lines = [str(i) for i in errors[:max_shown]]
        if len(errors) > max_shown:
            lines.append(f"... and {len(errors) - max_shown} more")
        super().__init__(head + ":\n" + "\n".join(lines))


_JSON_TYPES = {dict: "object", list: "array", str: "string", int: "number", float: "number", bool: "boolean",
               type(None): "null"}


def json_type(value: object, *, article: bool = False) -> str:
    """The JSON type name of a decoded value, for messages: ``"string"``, or ``"a string"`` with ``article``."""
    name = _JSON_TYPES.get(type(value), type(value).__name__)
    if article and name != "null":
        return ("an " if name[0] in "aeiou" else "a ") + name
    return name
