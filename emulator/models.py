"""The base-model catalogue: which Gemini models exist, what each can be tuned with, and when each is retired.

Source: /work/shared/reference/vertex-2026-12.md §1d (preference tuning), §5 (lifecycle, SFT and continuous-tuning
lists). Lifecycle per model: ``release`` → ``tuning_blocked_from`` (= retirement − 1 month: "One month before the
retirement date, new access to the model is blocked for online inference, batch inference, and tuning") →
``retirement`` ("API requests referencing a retired model ID typically returns a 404 error").

What a date means depends on the emulator's *today*: the config field ``today`` (``POST /_emulator/config
{"today": "2026-12-07"}``), initialised from the environment variable ``GEMINI_EMULATOR_TODAY`` and defaulting to
:data:`DEFAULT_TODAY`. ``"now"`` means the wall clock's UTC date. The default is a fixed date before the 2.5 models'
tuning block (2026-09-20) so that clients and tests written for ``gemini-2.5-flash`` keep working; set
``GEMINI_EMULATOR_TODAY=now`` (or a date from 2026-10-20 on) for the late-2026 catalogue, in which only
``gemini-3.5-flash``, ``gemini-3.5-flash-lite`` and ``gemini-3.1-flash-lite`` are tunable.

A model id may carry a version suffix (``-001``) or a preview suffix (``-preview-…``); it resolves to its family.
``GET /_emulator/models`` lists the catalogue with each model's status on *today*.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass, field

DEFAULT_TODAY = "2026-09-01"
TODAY_ENV = "GEMINI_EMULATOR_TODAY"
# unverified: the emulator's choice (not documented): Gemini 3.x tuning in these locations only (kept from the
# emulator's earlier rule); 2.x models in any location.
GEMINI3_LOCATIONS = frozenset({"us-central1", "europe-west4"})
ALL_SIZES = frozenset({1, 2, 4, 8, 16})
# "Max input and output tokens per training example: 131,072" (2.5 Flash SFT page; preference-tuning page).
MAX_EXAMPLE_TOKENS = 131_072


@dataclass(frozen=True)
class BaseModel:
    id: str
    release: dt.date
    retirement: dt.date | None             # the earliest announced date ("... or later")
    supervised: bool = False
    preference: bool = False
    continuous: bool = False
    sft_adapters: frozenset[int] = frozenset()
    preference_adapters: frozenset[int] = frozenset()
    locations: frozenset[str] | None = None   # None: every location
    max_example_tokens: int = MAX_EXAMPLE_TOKENS
    launch_stage: str = "GA"
    notes: tuple[str, ...] = field(default=())

    @property
    def tuning_blocked_from(self) -> dt.date | None:
        if self.retirement is None:
            return None
        r = self.retirement
        year, month = (r.year, r.month - 1) if r.month > 1 else (r.year - 1, 12)
        for day in (r.day, 30, 29, 28):      # the same day one month earlier, clamped to that month's length
            try:
                return dt.date(year, month, day)
            except ValueError:
                continue
        raise AssertionError("unreachable")

    def status(self, today: dt.date) -> str:
        """``unreleased`` | ``available`` | ``tuning_blocked`` | ``retired`` on ``today``."""
        if today < self.release:
            return "unreleased"
        if self.retirement is not None and today >= self.retirement:
            return "retired"
        blocked = self.tuning_blocked_from
        if blocked is not None and today >= blocked:
            return "tuning_blocked"
        return "available"

    def to_dict(self, today: dt.date) -> dict:
        return {"id": self.id, "release": self.release.isoformat(),
                "tuningBlockedFrom": self.tuning_blocked_from.isoformat() if self.tuning_blocked_from else None,
                "retirement": self.retirement.isoformat() if self.retirement else None,
                "status": self.status(today), "supervisedTuning": self.supervised,
                "preferenceTuning": self.preference, "continuousTuning": self.continuous,
                "supervisedAdapterSizes": sorted(self.sft_adapters),
                "preferenceAdapterSizes": sorted(self.preference_adapters),
                "locations": sorted(self.locations) if self.locations else None,
                "maxExampleTokens": self.max_example_tokens, "notes": list(self.notes)}


def _d(s: str) -> dt.date:
    return dt.date.fromisoformat(s)


CATALOGUE: tuple[BaseModel, ...] = (
    BaseModel("gemini-4-argon", _d("2026-10-13"), _d("2027-10-13"),
              notes=("unverified: SFT support not found; retirement '2027-10-13 or later' (es-419: none announced)",)),
    BaseModel("gemini-3.8-flash", _d("2026-09-02"), _d("2027-09-02"),
              notes=("unverified: SFT support not found",)),
    BaseModel("gemini-3.5-flash-lite", _d("2026-07-21"), _d("2027-07-21"), supervised=True, preference=True,
              continuous=True, sft_adapters=ALL_SIZES, preference_adapters=ALL_SIZES, locations=GEMINI3_LOCATIONS,
              notes=("unverified: preference tuning support not found (3.x); continuous tuning not in the "
                     "truncated list; adapter sizes and token limit not found (2.5 Flash values used)",)),
    BaseModel("gemini-3.5-flash", _d("2026-05-19"), _d("2027-05-19"), supervised=True, preference=True,
              continuous=True, sft_adapters=ALL_SIZES, preference_adapters=ALL_SIZES, locations=GEMINI3_LOCATIONS,
              notes=("unverified: preference tuning support not found (3.x); adapter sizes and token limit not "
                     "found (2.5 Flash values used)",)),
    BaseModel("gemini-3.1-flash-lite", _d("2026-05-07"), _d("2027-05-07"), supervised=True, preference=True,
              continuous=True, sft_adapters=ALL_SIZES, preference_adapters=ALL_SIZES, locations=GEMINI3_LOCATIONS,
              notes=("unverified: preference tuning support not found (3.x); adapter sizes and token limit not "
                     "found (2.5 Flash values used)",)),
    # Preference tuning: "now supported for Gemini 2.5 Flash and Flash-Lite" (forum) -- not 2.5 Pro.
    BaseModel("gemini-2.5-pro", _d("2025-06-17"), _d("2026-10-20"), supervised=True, preference=False,
              continuous=True, sft_adapters=frozenset({1, 2, 4, 8}),
              notes=("unverified: adapter sizes 1-8 (the emulator's earlier rule)",)),
    BaseModel("gemini-2.5-flash", _d("2025-06-17"), _d("2026-10-20"), supervised=True, preference=True,
              continuous=True, sft_adapters=ALL_SIZES, preference_adapters=ALL_SIZES,
              notes=("unverified: continuous tuning (the docs' list is truncated)",)),
    BaseModel("gemini-2.5-flash-lite", _d("2025-07-22"), _d("2026-10-20"), supervised=True, preference=True,
              continuous=True, sft_adapters=ALL_SIZES, preference_adapters=ALL_SIZES,
              notes=("unverified: continuous tuning (the docs' list is truncated)",)),
    # unverified: release dates of the 2.0 models (only their retirement dates are documented).
    BaseModel("gemini-2.0-flash-001", _d("2025-02-05"), _d("2026-02-05"), supervised=True, continuous=True,
              sft_adapters=frozenset({1, 2, 4, 8})),
    BaseModel("gemini-2.0-flash-lite-001", _d("2025-02-25"), _d("2026-02-25"), supervised=True, continuous=True,
              sft_adapters=frozenset({1, 2, 4, 8})),
)
_BY_ID = {m.id: m for m in CATALOGUE}
_SUFFIX = re.compile(r"^(?P<family>.+?)(?:-\d{3}|-preview[\w.-]*)$")


def lookup(model_id: str) -> BaseModel | None:
    """The catalogue entry of ``model_id`` (``publishers/google/models/`` prefix and version suffix allowed)."""
    mid = str(model_id).removeprefix("publishers/google/models/")
    if mid in _BY_ID:
        return _BY_ID[mid]
    m = _SUFFIX.match(mid)
    return _BY_ID.get(m["family"]) if m else None


def today(config) -> dt.date:
    """The emulator's date: ``config.today`` (``YYYY-MM-DD`` or ``now``)."""
    value = getattr(config, "today", None) or DEFAULT_TODAY
    if value == "now":
        return dt.datetime.now(dt.timezone.utc).date()
    return dt.date.fromisoformat(str(value))


def default_today() -> str:
    return os.environ.get(TODAY_ENV) or DEFAULT_TODAY


def publisher_model(model: BaseModel, requested_id: str) -> dict:
    """A ``PublisherModel`` resource (DISC-v1 ``GoogleCloudAiplatformV1PublisherModel``).

    unverified: the values of ``versionId``, ``openSourceCategory``, ``versionState`` and ``publisherModelTemplate``
    for Gemini models (only the field names and enums are documented); no lifecycle field exists in the schema.
    """
    return {"name": f"publishers/google/models/{requested_id}",
            "versionId": "default",
            "openSourceCategory": "PROPRIETARY",
            "launchStage": model.launch_stage,
            "versionState": "VERSION_STATE_STABLE",
            "publisherModelTemplate": f"projects/{{project}}/locations/{{location}}/publishers/google/models/"
                                      f"{requested_id}"}
