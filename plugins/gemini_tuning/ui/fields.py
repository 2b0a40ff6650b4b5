"""Reading values the UI page does not trust: one small set of explicit type checks.

Purpose: XCom is written by task code and by anyone with XCom write access (the REST API), champion pointers and
results files by any run's promoter or evaluator, the status cache by this process from Google's answers. The page
reads all of them; one value of the wrong type must not take the page down for everyone (it used to: a
``progress_percent`` of ``"50"`` made the overview answer 500), and nothing from them may reach a URL unchecked.

How it works: every field the views read goes through one of these helpers, each given *where* it is
(``"tune result: checkpoints[0].step"``). A value of the right type comes back (ints stay ints, an int is a
number, a missing key or ``null`` is None); anything else raises :class:`Unreadable` with where it is, what it is
and what was expected. The views catch that per section of a run and show ``unreadable: <why>`` in the run's row
and on its run page; the rest of the page is unaffected.

What it does not do: no guessing (``"50"`` is not read as 50), no schema for the fields the page does not read
(they are dropped, not checked), no truncation of names (a name longer than its bound is refused; free text such
as error messages is cut to its bound instead).

Known limitations: bounds are generous constants, not the services' exact limits.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

MAX_NAME = 1024          # a resource name, URI, id or state
MAX_TEXT = 2000          # free text shown on the page (error messages, reasons, summaries): cut to this
MAX_ITEMS = 500          # items of a list or keys of an object the page reads
MAX_DEPTH = 6            # nesting of a free-form JSON value (gate rule details)
_SHOWN = 40


class Unreadable(ValueError):
    """A value the page cannot read: ``where`` it is and ``why`` (the message is ``"<where>: <why>"``).

    :param where: where the value is, e.g. ``"tune result: checkpoints[0].step"`` ("": the message is ``why`` alone).
    :param why: what it is and what was expected, e.g. ``"is a string ('50'), expected a number"``.
    """

    def __init__(self, where: str, why: str):
        self.where, self.why = where, why
        super().__init__(f"{where}: {why}" if where else why)


class Undecodable:
    """An XCom value Airflow's own decoder refused (``ui.data`` keeps it in place of the value: the views then say
    the field is unreadable, instead of the whole query failing).

    :param why: why the decoder refused it (shown as the value's repr, ``<why>``).
    """

    def __init__(self, why: str):
        self.why = why

    def __repr__(self) -> str:
        return f"<{self.why}>"


def kind(value) -> str:
    """What a value is, for a message: its JSON type and a short repr."""
    names = {dict: "an object", list: "a list", tuple: "a list", str: "a string", bool: "a boolean",
             int: "an integer", float: "a number", type(None): "null", Undecodable: "an undecodable XCom value"}
    shown = repr(value)
    shown = shown if len(shown) <= _SHOWN else shown[:_SHOWN - 3] + "..."
    return f"{names.get(type(value), type(value).__name__)} ({shown})"


def _at(where: str, key) -> str:
    return f"{where}[{key}]" if isinstance(key, int) else (f"{where}.{key}" if where else str(key))


def obj(value, where: str, *, required: bool = False) -> dict:
    """``value`` when it is a JSON object (None: ``{}`` unless ``required``)."""
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise Unreadable(where, f"is {kind(value)}, expected an object")
    if len(value) > MAX_ITEMS:
        raise Unreadable(where, f"has {len(value)} keys, more than {MAX_ITEMS}")
    return value


def items(value, where: str) -> list:
    """``value`` when it is a list (None: ``[]``)."""
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise Unreadable(where, f"is {kind(value)}, expected a list")
    if len(value) > MAX_ITEMS:
        raise Unreadable(where, f"has {len(value)} items, more than {MAX_ITEMS}")
    return list(value)


def name(d: Mapping, key: str, where: str, *, choices: tuple[str, ...] | None = None) -> str | None:
    """A short string (a name, id, URI or state) or None; longer than ``MAX_NAME``: refused."""
    value = d.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise Unreadable(_at(where, key), f"is {kind(value)}, expected a string")
    if len(value) > MAX_NAME:
        raise Unreadable(_at(where, key), f"is a string of {len(value)} characters, more than {MAX_NAME}")
    if choices is not None and value not in choices:
        raise Unreadable(_at(where, key), f"is {kind(value)}, expected one of {', '.join(choices)}")
    return value


def ident(d: Mapping, key: str, where: str) -> str | None:
    """An id that is a string or an integer (a checkpoint id): as a string, or None."""
    value = d.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return name(d, key, where)


def text(d: Mapping, key: str, where: str) -> str | None:
    """Free text shown as is (cut to ``MAX_TEXT`` characters) or None."""
    value = d.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise Unreadable(_at(where, key), f"is {kind(value)}, expected a string")
    return value if len(value) <= MAX_TEXT else value[:MAX_TEXT - 1] + "…"


def number(d: Mapping, key: str, where: str) -> int | float | None:
    """A finite number (an integer or a float, never a boolean or a string) or None."""
    return as_number(d.get(key), _at(where, key))


def as_number(value, where: str) -> int | float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Unreadable(where, f"is {kind(value)}, expected a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise Unreadable(where, f"is {value!r}, expected a finite number")
    if isinstance(value, int) and abs(value) > 2 ** 53:
        raise Unreadable(where, f"is an integer of {len(str(abs(value)))} digits, too large to show")
    return value


def integer(d: Mapping, key: str, where: str) -> int | None:
    """An integer (not a boolean, not a float) or None."""
    value = number(d, key, where)
    if value is not None and not isinstance(value, int):
        raise Unreadable(_at(where, key), f"is {kind(value)}, expected an integer")
    return value


def flag(d: Mapping, key: str, where: str) -> bool | None:
    value = d.get(key)
    if value is None or isinstance(value, bool):
        return value
    raise Unreadable(_at(where, key), f"is {kind(value)}, expected true or false")


def numbers(value, where: str) -> dict[str, int | float | None]:
    """An object of metric name -> number (or null), e.g. a summary's ``metrics``."""
    return {str(k): as_number(v, _at(where, k)) for k, v in obj(value, where).items()}


def plain(value, where: str, depth: int = 0):
    """Any JSON value made of objects, lists, strings, finite numbers, booleans and null (a gate rule's observed
    value, threshold or details), within ``MAX_DEPTH``/``MAX_ITEMS``/``MAX_TEXT``."""
    if depth > MAX_DEPTH:
        raise Unreadable(where, f"is nested more than {MAX_DEPTH} levels deep")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return as_number(value, where)
    if isinstance(value, str):
        return text({"v": value}, "v", where)
    if isinstance(value, (list, tuple)):
        return [plain(v, _at(where, i), depth + 1) for i, v in enumerate(items(value, where))]
    if isinstance(value, dict):
        return {str(k): plain(v, _at(where, k), depth + 1) for k, v in obj(value, where).items()}
    raise Unreadable(where, f"is {kind(value)}, expected a JSON value")
