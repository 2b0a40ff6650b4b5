"""Budget limits of a tuning job, checked before anything is paid for (pure arithmetic, no Airflow, no network).

What is counted
---------------
Supervised tuning is billed per *training token*: the tokens of the training examples times the number of epochs.
The dataset step (``core.dataset``) counts, for every training example (the validation split is not counted), the
characters of every text the model is trained on (system instruction, user and model turns) and estimates its
tokens as ``ceil(chars / 4)`` (``stats["train_tokens"]``). That is an **estimate**: real tokenizers vary (CJK text
has more tokens per character, code fewer or more); non-text parts are not counted. The check compares

    estimated billable tokens = train_tokens x epochs

with ``max_training_tokens``, and ``estimated billable tokens / 10^6 x price_per_million_training_tokens`` with
``max_cost``. No price is built in: prices change and differ by model and contract, so a cost limit needs the
price from the caller (in the currency ``max_cost`` is in).

Epochs: the job's epoch count, or, when it is None (the service picks), :data:`DEFAULT_EPOCHS` of the backend (the
emulator's defaults: Vertex 3, Gemini API 5). Set ``epochs`` explicitly for a bound that does not rely on them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

#: Epochs assumed when the job leaves the count to the service (Vertex ``epoch_count``, Gemini API ``epochCount``).
DEFAULT_EPOCHS = {"vertex": 3, "gemini_api": 5}
TOKEN_ESTIMATE = "ceil(chars / 4) over the training examples' texts"


class BudgetError(ValueError):
    """A budget limit is exceeded, or cannot be checked (misconfigured limits, no token count)."""


@dataclass(frozen=True)
class BudgetLimits:
    """``None`` everywhere = no limit.

    :param max_training_tokens: the most billable training tokens (examples' tokens x epochs) a job may have.
    :param max_cost: the most a job may cost, in the price's currency; needs ``price_per_million_training_tokens``.
    :param price_per_million_training_tokens: your price of this model's tuning per million training tokens
        (no price is built in); used for the cost estimate.
    """

    max_training_tokens: int | None = None
    max_cost: float | None = None
    price_per_million_training_tokens: float | None = None

    def validate(self) -> None:
        errors = []
        if self.max_training_tokens is not None and self.max_training_tokens < 1:
            errors.append(f"max_training_tokens must be >= 1 (or empty for no limit), got {self.max_training_tokens}")
        if self.max_cost is not None and self.max_cost < 0:
            errors.append(f"max_cost must be >= 0 (or empty for no limit), got {self.max_cost}")
        if self.price_per_million_training_tokens is not None and self.price_per_million_training_tokens <= 0:
            errors.append("price_per_million_training_tokens must be > 0, got "
                          f"{self.price_per_million_training_tokens}")
        if self.max_cost is not None and self.price_per_million_training_tokens is None:
            errors.append("max_cost needs price_per_million_training_tokens (your price for this model's tuning, "
                          "per million training tokens, in max_cost's currency): no price is built in")
        if errors:
            raise BudgetError("invalid budget limits: " + "; ".join(errors))

    @property
    def any(self) -> bool:
        return self.max_training_tokens is not None or self.max_cost is not None


@dataclass(frozen=True)
class BudgetEstimate:
    """What a tuning job will train, estimated from the dataset step's token count (:func:`estimate`).

    :param training_tokens: the tokens of one epoch over the training examples (estimate: ``ceil(chars / 4)``).
    :param epochs: the epochs that will be trained.
    :param epochs_assumed: True: ``epochs`` is the backend's default (the job does not set it).
    :param billable_tokens: ``training_tokens`` x ``epochs``, what :class:`BudgetLimits` caps.
    :param cost: ``billable_tokens`` / 1e6 x the price; None when no price is given.
    :param price_per_million_training_tokens: the price the cost was computed with; None: none given.
    """

    training_tokens: int               # one epoch over the training examples (estimate)
    epochs: int
    epochs_assumed: bool               # True: the backend's default (the job does not set epochs)
    billable_tokens: int               # training_tokens x epochs
    cost: float | None                 # billable_tokens / 1e6 x price, when a price is given
    price_per_million_training_tokens: float | None

    def describe(self) -> str:
        epochs = f"{self.epochs} epochs" + (" (the backend's default, assumed: epochs is not set)"
                                            if self.epochs_assumed else "")
        text = (f"{self.billable_tokens:,} billable training tokens (estimate: {self.training_tokens:,} tokens of "
                f"training examples, {TOKEN_ESTIMATE}, x {epochs})")
        if self.cost is not None:
            text += (f", cost {self.cost:,.2f} at {self.price_per_million_training_tokens:g} per million training "
                     "tokens")
        return text

    def to_dict(self) -> dict:
        return asdict(self)


def effective_epochs(backend: str, epochs: int | None) -> tuple[int, bool]:
    """The epochs that will be trained, and whether it is the backend's default (assumed)."""
    if epochs is not None:
        return int(epochs), False
    if backend not in DEFAULT_EPOCHS:
        raise BudgetError(f"no default epoch count known for backend {backend!r}; set epochs")
    return DEFAULT_EPOCHS[backend], True


def training_tokens_of(stats: Any) -> int | None:
    """The per-epoch training-token estimate from the dataset step's ``stats`` (None when they hold none)."""
    if not isinstance(stats, dict):
        return None
    if stats.get("train_tokens") is not None:
        return int(stats["train_tokens"])
    if stats.get("billable_tokens") is not None and stats.get("epochs"):  # older stats: billable at their epochs
        return int(stats["billable_tokens"]) // int(stats["epochs"])
    return None


def estimate(training_tokens: int, *, backend: str, epochs: int | None,
             price_per_million_training_tokens: float | None = None) -> BudgetEstimate:
    n, assumed = effective_epochs(backend, epochs)
    billable = int(training_tokens) * n
    price = price_per_million_training_tokens
    return BudgetEstimate(training_tokens=int(training_tokens), epochs=n, epochs_assumed=assumed,
                          billable_tokens=billable, cost=billable / 1e6 * price if price is not None else None,
                          price_per_million_training_tokens=price)


def check_budget(stats: Any, limits: BudgetLimits, *, backend: str, epochs: int | None) -> BudgetEstimate | None:
    """The estimate (None when there is no token count and no limit), or :class:`BudgetError` naming the estimate,
    the limit and what to change. Without limits this never raises for a missing count."""
    limits.validate()
    tokens = training_tokens_of(stats)
    if tokens is None:
        if limits.any:
            raise BudgetError("a budget limit is set (max_training_tokens / max_cost) but there is no training-token "
                              "count to check it against: pass the dataset step's stats (its XCom 'stats', with "
                              "'train_tokens') as dataset_stats, or clear the limits")
        return None
    est = estimate(tokens, backend=backend, epochs=epochs,
                   price_per_million_training_tokens=limits.price_per_million_training_tokens)
    over = []
    if limits.max_training_tokens is not None and est.billable_tokens > limits.max_training_tokens:
        over.append(f"above max_training_tokens={limits.max_training_tokens:,}")
    if limits.max_cost is not None and est.cost is not None and est.cost > limits.max_cost:
        over.append(f"cost {est.cost:,.2f} above max_cost={limits.max_cost:g}")
    if over:
        raise BudgetError(
            f"over budget: estimated {est.describe()} is {' and '.join(over)}. Nothing was created. To tune anyway, "
            "raise the limit (or clear it for no limit); or lower epochs, or train on fewer or shorter examples")
    return est
