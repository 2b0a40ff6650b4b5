"""The base-model lifecycle calendar (``core.lifecycle`` and the shipped ``data/model_lifecycle.json``)."""

from __future__ import annotations

import json
from datetime import date

import pytest

from gemini_tuning.core import lifecycle as lc
from gemini_tuning.core.lifecycle import base_status, load_table, rebase_decision, retirement_of

pytestmark = pytest.mark.fast

TABLE = load_table()


def test_the_shipped_table_has_googles_published_dates():
    assert TABLE.as_of >= date(2026, 12, 1) and TABLE.source
    assert all(u.startswith("https://") for u in TABLE.source)
    for m in ("gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.5-flash-lite"):
        assert TABLE.models[m].retirement == date(2026, 10, 20)
        assert TABLE.models[m].tuning_blocked_from == date(2026, 9, 20) and TABLE.models[m].tunable is False
    assert TABLE.models["gemini-3.5-flash"].retirement == date(2027, 5, 19)
    assert TABLE.models["gemini-3.5-flash"].retirement_or_later is True
    assert TABLE.models["gemini-3.5-flash-lite"].retirement == date(2027, 7, 21)
    assert TABLE.models["gemini-3.1-flash-lite"].retirement == date(2027, 5, 7)
    assert TABLE.models["gemini-3.8-flash"].tunable is None       # supervised tuning support not found
    assert retirement_of("gemini-2.0-flash-001", TABLE) == date(2026, 2, 5)
    assert retirement_of("gemini-2.0-flash-lite-001", TABLE) == date(2026, 2, 25)


def test_the_shipped_file_is_in_the_package():
    assert lc.DEFAULT_TABLE_PATH.is_file() and lc.DEFAULT_TABLE_PATH.parent.name == "data"
    assert lc.DEFAULT_TABLE_PATH.parent.parent.name == "gemini_tuning"


@pytest.mark.parametrize("model", ["gemini-2.5-flash", "publishers/google/models/gemini-2.5-flash",
                                   "projects/p/locations/us-central1/publishers/google/models/gemini-2.5-flash",
                                   "models/gemini-2.5-flash", "gemini-2.5-flash-001", "gemini-2.5-flash@002"])
def test_retirement_of_accepts_every_id_form(model):
    assert retirement_of(model, TABLE) == date(2026, 10, 20)


def test_versions_map_to_their_own_family_not_a_shorter_one():
    assert lc.resolve_model("gemini-2.5-flash-lite-001", TABLE).model == "gemini-2.5-flash-lite"


def test_unknown_models_have_no_date():
    assert retirement_of("gemini-9-ultra", TABLE) is None
    assert retirement_of("gemini-2.5-flashy", TABLE) is None
    s = base_status("gemini-9-ultra", date(2026, 12, 7), TABLE)
    assert s.state == "unknown" and s.retirement is None and s.days_left is None
    assert "gemini-9-ultra" in s.message and "not in the model lifecycle table" in s.message


def test_a_family_without_a_published_date_is_unknown():
    table = {"as_of": "2026-12-07", "source": "https://x", "models": {"m": {"retirement": None, "note": "none"}}}
    s = base_status("m", date(2026, 12, 7), table)
    assert s.state == "unknown" and "no retirement date is published" in s.message and s.model == "m"


@pytest.mark.parametrize("model, today, state, days_left", [
    ("gemini-3.5-flash", date(2026, 12, 7), "ok", 163),
    ("gemini-3.5-flash", date(2027, 2, 18), "warn", 90),          # 60 days before the block (2027-04-19)
    ("gemini-3.5-flash", date(2027, 4, 19), "blocked", 30),
    ("gemini-3.5-flash", date(2027, 5, 19), "retired", 0),
    ("gemini-2.5-flash", date(2026, 12, 7), "retired", -48),
    ("gemini-2.5-flash", date(2026, 9, 25), "blocked", 25),
    ("gemini-2.5-flash", date(2026, 8, 1), "blocked", 80),       # tunable false in the table (as of December)
])
def test_base_status(model, today, state, days_left):
    s = base_status(model, today, TABLE, warn_days=60)
    assert (s.state, s.days_left) == (state, days_left)
    assert model in s.message and str(s.retirement) in s.message


def test_messages_say_what_to_do():
    retired = base_status("gemini-2.5-flash", date(2026, 12, 7), TABLE)
    assert "retired on 2026-10-20" in retired.message and "gemini-3.5-flash-lite" in retired.message
    warn = base_status("gemini-3.5-flash", date(2027, 3, 1), TABLE)
    assert warn.state == "warn" and "blocked from 2027-04-19" in warn.message and "or later" in warn.message
    assert "plan to move" in warn.message


def test_a_deployment_overrides_the_table_with_its_own_file(tmp_path):
    path = tmp_path / "lifecycle.json"
    path.write_text(json.dumps({"as_of": "2027-01-01", "source": ["https://example.invalid"],
                                "models": {"gemini-3.5-flash": {"retirement": "2027-03-01", "tunable": True}}}))
    t = load_table(path)
    assert t.path == str(path) and retirement_of("gemini-3.5-flash", t) == date(2027, 3, 1)
    s = base_status("gemini-3.5-flash", date(2027, 1, 15), t, warn_days=60)
    assert s.state == "warn" and s.tuning_blocked_from is None


@pytest.mark.parametrize("bad", [{"models": {}}, {"as_of": "2026-12-07"}, {"as_of": "soon", "models": {}},
                                 {"as_of": "2026-12-07", "models": {"m": {"retirement": "20 Oct"}}}])
def test_a_bad_table_is_refused(bad, tmp_path):
    path = tmp_path / "t.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=str(path)):
        load_table(path)
    path.write_text("{")
    with pytest.raises(ValueError, match="not JSON"):
        load_table(path)


# ---------------------------------------------------------------------------------------------- rebase
def test_a_healthy_champion_base_continues():
    action, msg = rebase_decision("gemini-3.5-flash", date(2026, 12, 7), TABLE, 60, "rebase",
                                  base_model="gemini-3.5-flash")
    assert action == "continue" and "2027-05-19" in msg


def test_an_unknown_champion_base_continues_and_says_so():
    action, msg = rebase_decision("gemini-9", date(2026, 12, 7), TABLE, 60, "fail")
    assert action == "continue" and "not in the model lifecycle table" in msg


@pytest.mark.parametrize("today", [date(2026, 8, 1), date(2026, 9, 25), date(2026, 12, 7)])
def test_a_retiring_champion_base_rebases_onto_the_configured_base(today):
    action, msg = rebase_decision("publishers/google/models/gemini-2.5-flash", today, TABLE, 60, "rebase",
                                  base_model="gemini-3.5-flash")
    assert action == "rebase"
    assert "gemini-2.5-flash" in msg and "2026-10-20" in msg and "base_model=gemini-3.5-flash" in msg
    assert "continue_from=champion is replaced by a fresh tuning" in msg


def test_within_the_warning_window_rebases():
    action, _ = rebase_decision("gemini-3.5-flash", date(2027, 3, 1), TABLE, 60, "rebase",
                                base_model="gemini-3.5-flash-lite")
    assert action == "rebase"


def test_policy_fail_stops_with_a_clear_message():
    action, msg = rebase_decision("gemini-2.5-flash", date(2026, 12, 7), TABLE, 60, "fail",
                                  base_model="gemini-3.5-flash")
    assert action == "fail" and "on_base_retirement='fail'" in msg and "retired on 2026-10-20" in msg
    assert "on_base_retirement='rebase'" in msg


def test_a_rebase_that_would_not_help_fails():
    action, msg = rebase_decision("gemini-2.5-flash", date(2026, 12, 7), TABLE, 60, "rebase",
                                  base_model="gemini-2.5-flash")
    assert action == "fail" and "same model" in msg
    action, msg = rebase_decision("gemini-2.5-flash", date(2026, 12, 7), TABLE, 60, "rebase",
                                  base_model="gemini-2.5-pro")
    assert action == "fail" and "Cannot rebase" in msg and "gemini-2.5-pro" in msg
    action, msg = rebase_decision("gemini-2.5-flash", date(2026, 12, 7), TABLE, 60, "rebase")
    assert action == "fail" and "set base_model" in msg


def test_an_unknown_policy_is_refused():
    with pytest.raises(ValueError, match="on_base_retirement"):
        rebase_decision("gemini-2.5-flash", date(2026, 12, 7), TABLE, 60, "ignore")


def test_the_core_stays_pure():
    import ast

    tree = ast.parse(lc.DEFAULT_TABLE_PATH.parent.parent.joinpath("core", "lifecycle.py").read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not imported & {"airflow", "google", "httpx", "requests", "aiohttp"}
