"""core.budget: the billable-token estimate and the limits, checked before anything is paid for (issue: guard rails 1);
and the tuning operator applying them before the launcher."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from gemini_tuning.core.budget import (
    DEFAULT_EPOCHS,
    BudgetError,
    BudgetLimits,
    check_budget,
    effective_epochs,
    estimate,
    training_tokens_of,
)

pytestmark = pytest.mark.fast

STATS = {"train_tokens": 10_000, "epochs": 3, "billable_tokens": 30_000, "token_estimate": "ceil(chars / 4)"}


def test_epochs_given_or_the_backends_default():
    assert effective_epochs("vertex", 7) == (7, False)
    assert effective_epochs("vertex", None) == (3, True)
    assert effective_epochs("gemini_api", None) == (5, True)
    assert DEFAULT_EPOCHS == {"vertex": 3, "gemini_api": 5}
    with pytest.raises(BudgetError, match="set epochs"):
        effective_epochs("other", None)


def test_estimate_is_tokens_times_epochs_and_cost_from_the_given_price():
    est = estimate(10_000, backend="vertex", epochs=4, price_per_million_training_tokens=8.0)
    assert (est.billable_tokens, est.epochs, est.epochs_assumed) == (40_000, 4, False)
    assert est.cost == pytest.approx(0.32)
    assert estimate(10_000, backend="gemini_api", epochs=None).billable_tokens == 50_000
    assert estimate(10_000, backend="vertex", epochs=None).cost is None
    assert "assumed" in estimate(1, backend="vertex", epochs=None).describe()


def test_training_tokens_from_the_dataset_stats():
    assert training_tokens_of(STATS) == 10_000
    assert training_tokens_of({"billable_tokens": 30_000, "epochs": 3}) == 10_000   # stats without train_tokens
    assert training_tokens_of(None) is None and training_tokens_of({}) is None and training_tokens_of("x") is None


def test_no_limits_never_fail():
    assert check_budget(STATS, BudgetLimits(), backend="vertex", epochs=100).billable_tokens == 1_000_000
    assert check_budget(None, BudgetLimits(), backend="vertex", epochs=3) is None


def test_token_limit_at_and_above_the_estimate():
    assert check_budget(STATS, BudgetLimits(max_training_tokens=30_000), backend="vertex", epochs=3)  # equal: ok
    with pytest.raises(BudgetError) as err:
        check_budget(STATS, BudgetLimits(max_training_tokens=29_999), backend="vertex", epochs=3)
    msg = str(err.value)
    assert "30,000 billable training tokens" in msg and "10,000 tokens" in msg and "x 3 epochs" in msg
    assert "max_training_tokens=29,999" in msg and "Nothing was created" in msg
    assert "raise the limit" in msg and "lower epochs" in msg


def test_default_epochs_count_against_the_limit():
    # 10,000 tokens x the Gemini API's default 5 epochs = 50,000
    with pytest.raises(BudgetError, match="50,000 billable.*default, assumed"):
        check_budget(STATS, BudgetLimits(max_training_tokens=40_000), backend="gemini_api", epochs=None)
    assert check_budget(STATS, BudgetLimits(max_training_tokens=40_000), backend="vertex", epochs=None)


def test_cost_limit_needs_a_price_and_compares_the_cost():
    with pytest.raises(BudgetError, match="needs price_per_million_training_tokens"):
        check_budget(STATS, BudgetLimits(max_cost=10), backend="vertex", epochs=3)
    limits = BudgetLimits(max_cost=0.5, price_per_million_training_tokens=20.0)   # 30,000 tokens -> 0.60
    with pytest.raises(BudgetError, match=r"cost 0\.60 above max_cost=0\.5"):
        check_budget(STATS, limits, backend="vertex", epochs=3)
    ok = check_budget(STATS, BudgetLimits(max_cost=0.6, price_per_million_training_tokens=20.0), backend="vertex",
                      epochs=3)
    assert ok.cost == pytest.approx(0.6)


def test_a_limit_without_a_token_count_fails_instead_of_passing():
    with pytest.raises(BudgetError, match="no training-token count"):
        check_budget(None, BudgetLimits(max_training_tokens=1_000), backend="vertex", epochs=3)


@pytest.mark.parametrize("limits, match", [(BudgetLimits(max_training_tokens=0), "max_training_tokens must be"),
                                           (BudgetLimits(max_cost=-1, price_per_million_training_tokens=1), "max_cost"),
                                           (BudgetLimits(price_per_million_training_tokens=0), "price")])
def test_invalid_limits(limits, match):
    with pytest.raises(BudgetError, match=match):
        check_budget(STATS, limits, backend="vertex", epochs=3)


# ---------------------------------------------------------------------------------------------- the operator
class _Ti(SimpleNamespace):
    def xcom_push(self, key, value):
        self.pushed[key] = value


def tuning_operator(**kwargs):
    from gemini_tuning.operators.tune import GeminiTuningOperator

    op = GeminiTuningOperator(task_id="tune", base_model="gemini-2.5-flash", backend="vertex", epochs=3,
                              training_uri="gs://my-bucket/datasets/abc/train.jsonl", **kwargs)
    # a hook with an emulator URL and nothing else: any storage, registry or backend call would raise AttributeError
    op.__dict__["hook"] = SimpleNamespace(api_base_url="http://emulator.invalid")
    return op


def context(run_type="manual"):
    ti = _Ti(pushed={}, dag_id="d", task_id="tune", run_id="r", map_index=-1)
    return {"ti": ti, "dag_run": SimpleNamespace(run_type=run_type)}


def test_operator_fails_over_budget_before_the_launcher():
    from airflow.sdk.exceptions import AirflowFailException

    op = tuning_operator(max_training_tokens="29999", dataset_stats=STATS)
    with pytest.raises(AirflowFailException, match="over budget: estimated 30,000 .*max_training_tokens=29,999"):
        op.execute(context())


def test_operator_reads_stats_rendered_as_text_and_passes_the_budget_to_the_launcher(monkeypatch):
    from gemini_tuning.operators.tune import GeminiTuningOperator

    reached = []
    monkeypatch.setattr(GeminiTuningOperator, "tuning_backend", lambda self, kind: reached.append(kind) or 1 / 0)
    op = tuning_operator(max_training_tokens=30_000, max_cost="None", price_per_million_training_tokens=2.0,
                         dataset_stats=repr(STATS))   # a Jinja render without native objects: the dict's repr
    ctx = context()
    with pytest.raises(ZeroDivisionError):
        op.execute(ctx)
    assert reached == ["vertex"]
    assert ctx["ti"].pushed["budget"]["billable_tokens"] == 30_000
    assert ctx["ti"].pushed["budget"]["cost"] == pytest.approx(0.06)
