"""Base-model lifecycle: when a Gemini base model retires, whether it can still be tuned, and what a continuous
tuning run does when its champion's base is about to go.

Purpose
    Vertex blocks new tuning on a model one month before its retirement date, and a tuned model "shares the same
    discontinuation date as the base model" (``/work/shared/reference/vertex-2026-12.md`` §5). The service exposes
    no retirement field (PublisherModel has none), so the dates come from a dated table of Google's published dates:
    ``gemini_tuning/data/model_lifecycle.json`` (shipped) or a deployment's own file (the caller passes its path).
How it works
    * :func:`load_table` reads and checks the table; :func:`retirement_of` resolves a model id
      (``gemini-2.5-flash``, ``publishers/google/models/gemini-2.5-flash``, ``projects/…/publishers/google/models/…``,
      ``models/…``, a versioned id ``gemini-2.0-flash-001`` / ``…@001``) to its entry and date;
    * :func:`base_status` classifies a base model on a day: ``ok``, ``warn`` (within ``warn_days`` of the tuning
      block, or of the retirement when no block date is known), ``blocked`` (new tuning refused), ``retired`` or
      ``unknown`` (not in the table, or no published date);
    * :func:`rebase_decision`: a ``continue_from="champion"`` run whose champion's base is in the warning window,
      blocked or retired either ``rebase``s (a fresh tuning of the configured base model instead of continuing) or
      ``fail``s, per ``on_base_retirement``.
What it does not do
    Fetch dates (the table is data, dated ``as_of``), or touch Airflow, the SDKs or HTTP.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Literal

__all__ = ["DEFAULT_BASE_MODEL", "DEFAULT_TABLE_PATH", "BaseStatus", "LifecycleTable", "ModelLifecycle", "base_status",
           "load_table", "rebase_decision", "resolve_model", "retirement_of"]

DEFAULT_TABLE_PATH = Path(__file__).resolve().parent.parent / "data" / "model_lifecycle.json"
# what the messages suggest when the table lists no replacement: a documented SFT base (reference §5)
DEFAULT_BASE_MODEL = "gemini-3.5-flash"

State = Literal["ok", "warn", "blocked", "retired", "unknown"]
Decision = Literal["continue", "rebase", "fail"]

_VERSION = re.compile(r"^(?P<family>.+?)(?:-(?P<num>\d{3})|@(?P<at>[\w.-]+))$")


@dataclass(frozen=True)
class ModelLifecycle:
    """One model family's row of the table.

    :param model: the model id (family), e.g. ``gemini-2.5-flash``.
    :param retirement: Google's published retirement date; None = not published.
    :param retirement_or_later: the page lists it as "or later" (it may move later, never earlier).
    :param tuning_blocked_from: the first day new tuning is refused; None = not known.
    :param tunable: supervised tuning is documented and not blocked as of the table's date; None = not found.
    :param versions: documented versioned ids of this family (``gemini-2.0-flash-001``).
    :param replacements: the models Google lists as replacements.
    :param note: where a value comes from, or why it is missing.
    """

    model: str
    retirement: date | None = None
    retirement_or_later: bool = False
    tuning_blocked_from: date | None = None
    tunable: bool | None = None
    versions: tuple[str, ...] = ()
    replacements: tuple[str, ...] = ()
    note: str | None = None


@dataclass(frozen=True)
class LifecycleTable:
    """The whole table: its date, its sources and one :class:`ModelLifecycle` per family.

    :param as_of: the day the table's facts were checked (its statements hold as of then).
    :param source: the pages the facts come from (URLs), the first one named in messages.
    :param models: family (model id) -> its row.
    :param path: the file it was read from; None when parsed from data.
    """

    as_of: date
    source: tuple[str, ...]
    models: dict[str, ModelLifecycle] = field(default_factory=dict)
    path: str | None = None


@dataclass(frozen=True)
class BaseStatus:
    """What :func:`base_status` says about one base model on one day.

    :param state: ``ok`` | ``warn`` | ``blocked`` | ``retired`` | ``unknown``.
    :param retirement: the retirement date (None when unknown).
    :param days_left: days until the retirement (negative once retired; None when unknown).
    :param message: one sentence naming the model, the date and what to do.
    :param model: the family the id resolved to (None when not in the table).
    :param tuning_blocked_from: the first day new tuning is refused (None when unknown).
    """

    state: State
    retirement: date | None
    days_left: int | None
    message: str
    model: str | None = None
    tuning_blocked_from: date | None = None


# ------------------------------------------------------------------------------------------------ the table
def _date(value, where: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(str(value))
    except ValueError as exc:
        raise ValueError(f"{where}: {value!r} is not a date (YYYY-MM-DD)") from exc


def parse_table(data: dict, *, path: str | None = None) -> LifecycleTable:
    """A decoded table (see ``data/model_lifecycle.json``) -> :class:`LifecycleTable`.

    :raises ValueError: for a missing ``as_of`` / ``models``, or a date that does not parse.
    """
    where = path or "lifecycle table"
    if not isinstance(data, dict) or not isinstance(data.get("models"), dict) or "as_of" not in data:
        raise ValueError(f"{where}: expected an object with 'as_of' and 'models'")
    models = {}
    for name, row in data["models"].items():
        if not isinstance(row, dict):
            raise ValueError(f"{where}: models[{name!r}] must be an object")
        here = f"{where}: models[{name!r}]"
        models[name] = ModelLifecycle(
            model=name, retirement=_date(row.get("retirement"), f"{here}.retirement"),
            retirement_or_later=bool(row.get("retirement_or_later", False)),
            tuning_blocked_from=_date(row.get("tuning_blocked_from"), f"{here}.tuning_blocked_from"),
            tunable=row.get("tunable"), versions=tuple(row.get("versions") or ()),
            replacements=tuple(row.get("replacements") or ()), note=row.get("note"))
    source = data.get("source") or ()
    return LifecycleTable(as_of=_date(data["as_of"], f"{where}: as_of"),
                          source=tuple([source] if isinstance(source, str) else source), models=models, path=path)


def load_table(path: str | Path | None = None) -> LifecycleTable:
    """Read a lifecycle table: ``path`` (a deployment's own file, e.g. from a setting) or the shipped one.

    :raises ValueError: as :func:`parse_table`, or for a file that is not JSON.
    :raises OSError: for a file that cannot be read.
    """
    p = Path(path) if path is not None else DEFAULT_TABLE_PATH
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{p}: not JSON: {exc}") from exc
    return parse_table(data, path=str(p))


def _table(table: LifecycleTable | dict | None) -> LifecycleTable:
    if table is None:
        return load_table()
    return table if isinstance(table, LifecycleTable) else parse_table(table)


# ------------------------------------------------------------------------------------------------ lookups
def _bare(model: str) -> str:
    """``projects/p/locations/l/publishers/google/models/X`` / ``publishers/google/models/X`` / ``models/X`` -> X."""
    name = str(model).strip()
    if "/models/" in name:
        name = name.rsplit("/models/", 1)[1]
    return name.removeprefix("models/")


def resolve_model(model: str, table: LifecycleTable | dict | None = None) -> ModelLifecycle | None:
    """The table row of ``model``: by id, by a documented version, or a ``-NNN`` / ``@version`` id by its family
    (a version shares its family's published date; the newer families publish dates per family only)."""
    t = _table(table)
    name = _bare(model)
    if name in t.models:
        return t.models[name]
    for row in t.models.values():
        if name in row.versions:
            return row
    m = _VERSION.match(name)
    if m and m.group("family") in t.models:
        return t.models[m.group("family")]
    return None


def retirement_of(model: str, table: LifecycleTable | dict | None = None) -> date | None:
    """Google's published retirement date of ``model`` (any id form :func:`resolve_model` takes); None when the
    model is not in the table or has no published date."""
    row = resolve_model(model, table)
    return row.retirement if row else None


def _instead(row: ModelLifecycle) -> str:
    return (f"move to {' or '.join(row.replacements)} (Google's listed replacements)" if row.replacements
            else "move to a newer tunable base model")


def base_status(model: str, today: date, table: LifecycleTable | dict | None = None,
                warn_days: int = 60) -> BaseStatus:
    """Classify ``model`` as a tuning base on ``today``.

    :param model: any id form :func:`resolve_model` takes.
    :param today: the day to judge (the caller's clock; e.g. the run's logical date).
    :param table: a :class:`LifecycleTable`, its decoded JSON, or None for the shipped table.
    :param warn_days: ``warn`` this many days before the tuning block (or the retirement, without a block date).
    """
    t = _table(table)
    row = resolve_model(model, t)
    if row is None:
        return BaseStatus("unknown", None, None, f"{model} is not in the model lifecycle table (as of {t.as_of}); "
                                                 f"its retirement date is unknown: check {_where(t)} and add it to "
                                                 "the table")
    if row.retirement is None:
        return BaseStatus("unknown", None, None, f"{model}: no retirement date is published for {row.model} (table "
                                                 f"as of {t.as_of}{'; ' + row.note if row.note else ''}); check "
                                                 f"{_where(t)}", row.model)
    days_left = (row.retirement - today).days
    later = " or later" if row.retirement_or_later else ""
    blocked = row.tuning_blocked_from
    base = dict(retirement=row.retirement, days_left=days_left, model=row.model, tuning_blocked_from=blocked)
    if days_left <= 0:
        return BaseStatus("retired", message=f"{model} retired on {row.retirement} ({-days_left} days ago): "
                                             f"requests for it typically return 404 and it cannot be tuned; "
                                             f"{_instead(row)}", **base)
    if blocked is not None and today >= blocked:
        return BaseStatus("blocked", message=f"new tuning on {model} is blocked since {blocked} (one month before "
                                             f"its retirement on {row.retirement}, {days_left} days left); "
                                             f"{_instead(row)}", **base)
    if row.tunable is False:
        return BaseStatus("blocked", message=f"{model} is not tunable (table as of {t.as_of}; retires on "
                                             f"{row.retirement}{later}); {_instead(row)}", **base)
    until = (blocked - today).days if blocked is not None else days_left
    if until <= warn_days:
        block = f"new tuning is blocked from {blocked}, " if blocked is not None else ""
        return BaseStatus("warn", message=f"{model} retires on {row.retirement}{later} ({days_left} days left; "
                                          f"{block}tuned models retire with it): plan to {_instead(row)}", **base)
    return BaseStatus("ok", message=f"{model} retires on {row.retirement}{later} ({days_left} days left)", **base)


def _where(t: LifecycleTable) -> str:
    return t.source[0] if t.source else "Google's model versions page"


def rebase_decision(champion_base: str, today: date, table: LifecycleTable | dict | None = None,
                    warn_days: int = 60, on_base_retirement: Literal["rebase", "fail"] = "rebase", *,
                    base_model: str | None = None) -> tuple[Decision, str]:
    """What a ``continue_from="champion"`` run does, given the base model its champion was tuned from.

    ``continue`` while that base is ``ok`` (or ``unknown``: no date to act on; the message says so). In the warning
    window, blocked or retired: ``rebase`` (replace ``continue_from=champion`` by a fresh tuning of the configured
    ``base_model``) when ``on_base_retirement="rebase"``, else ``fail``. A rebase onto a ``base_model`` that is
    itself blocked or retired, or is the champion's own family, is a ``fail`` too: it would not help.

    :param champion_base: the base model of the champion (e.g. from the champion's tuning job).
    :param today: the day to judge.
    :param table: as :func:`base_status`.
    :param warn_days: as :func:`base_status`.
    :param on_base_retirement: ``rebase`` or ``fail``.
    :param base_model: the task's configured base model (what a rebase tunes); named in the messages.
    :raises ValueError: for another ``on_base_retirement``.
    """
    if on_base_retirement not in ("rebase", "fail"):
        raise ValueError(f"on_base_retirement must be 'rebase' or 'fail', got {on_base_retirement!r}")
    t = _table(table)
    champ = base_status(champion_base, today, t, warn_days)
    if champ.state == "ok":
        return "continue", f"continuing from the champion: its base {champ.message}"
    if champ.state == "unknown":
        return "continue", f"continuing from the champion: {champ.message}"
    why = f"the champion's base model {champ.message}"
    if on_base_retirement == "fail":
        return "fail", (f"{why}. on_base_retirement='fail': stopping. Set on_base_retirement='rebase' to tune "
                        f"{base_model or 'the configured base_model'} afresh instead of continuing from the "
                        "champion, or set continue_from=None")
    if base_model is None:
        return "fail", f"{why}. on_base_retirement='rebase' needs a base_model to tune afresh: set base_model"
    new = base_status(base_model, today, t, warn_days)
    if new.model is not None and new.model == champ.model:
        return "fail", (f"{why}. Rebasing onto base_model={base_model} would not help: it is the same model; set "
                        f"base_model to a newer model ({_instead(t.models[champ.model])})")
    if new.state in ("blocked", "retired"):
        return "fail", f"{why}. Cannot rebase: base_model {new.message}"
    return "rebase", (f"{why}. on_base_retirement='rebase': continue_from=champion is replaced by a fresh tuning of "
                      f"base_model={base_model} ({new.message})")
