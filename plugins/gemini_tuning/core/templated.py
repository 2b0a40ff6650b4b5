"""Templated operator arguments read back as values: the one boolean parser.

An operator argument set from a DAG Param (``"{{ params.require_approval }}"``) reaches ``execute`` as text
(Jinja renders ``True`` as ``"True"`` without ``render_template_as_native_obj``), or as a bool when the DAG passes
one directly. The approval's ``required`` and the evaluation's ``evaluate_checkpoints`` used to parse that text
with two different word lists, and both took an unknown word for False (``required="ture"`` skipped the human).
"""

from __future__ import annotations

__all__ = ["FALSE_WORDS", "TRUE_WORDS", "parse_bool"]

#: the words (case-insensitive, surrounding blanks ignored) read as True / False
TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
FALSE_WORDS = frozenset({"false", "0", "no", "off"})
_EMPTY = (None, "", "None")   # what Jinja renders for a missing or None value


def parse_bool(value: object, field: str = "value", *, default: bool | None = None) -> bool:
    """A templated boolean.

    * ``True``/``False`` as they are; the ints ``1``/``0``;
    * a string in :data:`TRUE_WORDS` (``true``, ``1``, ``yes``, ``on``) or :data:`FALSE_WORDS` (``false``, ``0``,
      ``no``, ``off``), in any case, blanks around it ignored;
    * ``None``, ``""`` or ``"None"`` (an empty Param): ``default``, when one is given;
    * anything else (another word, another number, a list...) raises ``ValueError`` naming ``field`` and the
      value: a typo is never taken for False (nor for True).

    :param value: the rendered argument.
    :param field: the argument's name, for the error.
    :param default: what an empty value means; None: an empty value is an error too.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    if default is not None and (value is None or (isinstance(value, str) and value.strip() in _EMPTY)):
        return default
    raise ValueError(f"{field}={value!r} is not a boolean: expected true/false, yes/no, on/off or 1/0 (any case)")
