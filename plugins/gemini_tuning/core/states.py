"""One job-status type for both services, and the one place that decides what a terminal state is.

The SDKs disagree (google-genai: SUCCEEDED/FAILED/CANCELLED/EXPIRED; aiplatform adds PAUSED; the Airflow provider
stops on anything but PENDING/RUNNING, so QUEUED ends its wait). Here: QUEUED, PENDING, RUNNING, CANCELLING,
UPDATING and PAUSED are *not* terminal (a paused job may resume; the wait's timeout bounds it); only SUCCEEDED is
success; FAILED, CANCELLED, EXPIRED and PARTIALLY_SUCCEEDED are terminal failures.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

SUCCEEDED = "JOB_STATE_SUCCEEDED"
FAILED = "JOB_STATE_FAILED"
CANCELLED = "JOB_STATE_CANCELLED"
EXPIRED = "JOB_STATE_EXPIRED"
PARTIALLY_SUCCEEDED = "JOB_STATE_PARTIALLY_SUCCEEDED"
RUNNING = "JOB_STATE_RUNNING"
PENDING = "JOB_STATE_PENDING"
QUEUED = "JOB_STATE_QUEUED"
PAUSED = "JOB_STATE_PAUSED"

TERMINAL_STATES = frozenset({SUCCEEDED, FAILED, CANCELLED, EXPIRED, PARTIALLY_SUCCEEDED})
FAILURE_STATES = TERMINAL_STATES - {SUCCEEDED}
KNOWN_STATES = TERMINAL_STATES | {RUNNING, PENDING, QUEUED, PAUSED, "JOB_STATE_CANCELLING", "JOB_STATE_UPDATING",
                                  "JOB_STATE_UNSPECIFIED"}

# Gemini API TunedModel.state -> job state (CREATING is running; a cancelled operation reports error code 1)
GEMINI_API_STATES = {"CREATING": RUNNING, "ACTIVE": SUCCEEDED, "FAILED": FAILED, "STATE_UNSPECIFIED": PENDING}


def is_terminal(state: str) -> bool:
    return state in TERMINAL_STATES


def normalize_state(state) -> str:
    """Accepts an enum member, its name or its value; returns the ``JOB_STATE_*`` name."""
    name = getattr(state, "name", None) or getattr(state, "value", None) or str(state)
    name = str(name)
    if name in GEMINI_API_STATES:
        return GEMINI_API_STATES[name]
    if not name.startswith("JOB_STATE_"):
        name = "JOB_STATE_" + name
    return name


@dataclass(frozen=True)
class LossPoint:
    """One point of a loss curve.

    :param step: the training step it was measured at.
    :param epoch: the epoch of that step; None when the service does not say.
    :param loss: the loss value.
    """

    step: int
    epoch: int | None
    loss: float


@dataclass(frozen=True)
class Checkpoint:
    """One checkpoint of a Vertex tuning job (``tunedModel.checkpoints[]``): the weights after ``epoch``.

    :param checkpoint_id: the service's checkpoint id (what ``checkpoint_id`` in a tuning spec or a promotion names).
    :param epoch: the epoch it was taken after; None when not reported.
    :param step: the training step it was taken at; None when not reported.
    :param endpoint: the endpoint that serves this checkpoint; None when not deployed (or not reported).
    """

    checkpoint_id: str
    epoch: int | None = None
    step: int | None = None
    endpoint: str | None = None       # where this checkpoint is served


@dataclass(frozen=True)
class JobStatus:
    """What either service says about one tuning job, normalised.

    :param backend: ``vertex`` or ``gemini_api`` (Vertex batch prediction jobs use ``vertex`` too).
    :param name: the job's resource name: ``…/tuningJobs/…`` (Vertex) or ``tunedModels/…`` (Gemini API).
    :param state: the normalised ``JOB_STATE_*`` state.
    :param sub_state: Vertex v1beta1 ``tuningJobState``, e.g. ``TUNING_JOB_STATE_TUNING``; None when not reported.
    :param completed_steps: training steps done so far; None when not reported.
    :param total_steps: training steps in all; None when not reported.
    :param progress_percent: percent done, 0-100; None when not reported.
    :param loss_history: the training loss points, in step order.
    :param validation_history: the validation loss points (Vertex with a validation dataset, from the metrics file).
    :param tuned_model: the tuned model: ``…/models/M@1`` (Vertex) or ``tunedModels/x`` (Gemini API); None until
        the job has made one.
    :param endpoint: the Vertex endpoint that serves the tuned model; None until there is one.
    :param error_code: the job's error code (``google.rpc.Status``); None unless it failed.
    :param error_message: the job's error message; None unless it failed.
    :param labels: the job's labels (Vertex: the identity labels among them; Gemini API: none).
    :param create_time: when the job was created (RFC 3339 / ISO 8601 text); None when not reported.
    :param end_time: when the job ended (RFC 3339 / ISO 8601 text); None while it runs.
    :param example_count: the training examples the service counted; None when not reported.
    :param metrics_uri: Vertex ``gcsMetricsUri``, where the job writes its training metrics.
    :param operation: Gemini API: the create operation that reports progress and loss (:attr:`poll_name`).
    :param output_uri: Vertex batch prediction: the folder holding ``predictions.jsonl``.
    :param checkpoints: Vertex: the tuned model's checkpoints, one per epoch unless ``exportLastCheckpointOnly``.
    :param continued_from: Vertex continuous tuning: the pre-tuned model version the job started from.
    :param base_model: the Google base model the job tunes (``baseModel``; continuous tuning:
        ``preTunedModel.baseModel``); a tuned model retires with it.
    :param billable_tokens: Vertex ``totalBillableTokenCount`` of the training data; None when not reported.
    :param dropped_count: Vertex ``totalTruncatedExampleCount``: examples the service dropped (too many tokens, …).
    :param dropped: (1-based index in the training file, reason) of dropped examples the service listed.
    """

    backend: str                      # "vertex" | "gemini_api"
    name: str                         # tuningJobs/… (Vertex) or tunedModels/… (Gemini API)
    state: str                        # JOB_STATE_*
    sub_state: str | None = None      # Vertex v1beta1 tuningJobState, e.g. TUNING_JOB_STATE_TUNING
    completed_steps: int | None = None
    total_steps: int | None = None
    progress_percent: float | None = None
    loss_history: tuple[LossPoint, ...] = ()
    validation_history: tuple[LossPoint, ...] = ()   # Vertex with a validation dataset: eval loss (metrics file)
    tuned_model: str | None = None    # models/M@1 (Vertex) or tunedModels/x (Gemini API)
    endpoint: str | None = None       # Vertex endpoint that serves the tuned model
    error_code: int | None = None
    error_message: str | None = None
    labels: dict = field(default_factory=dict)
    create_time: str | None = None
    end_time: str | None = None
    example_count: int | None = None
    metrics_uri: str | None = None    # Vertex: gcsMetricsUri, where the job writes its training metrics
    operation: str | None = None      # Gemini API: the create operation that reports progress and loss
    output_uri: str | None = None     # Vertex batch prediction: the folder holding predictions.jsonl
    checkpoints: tuple[Checkpoint, ...] = ()   # Vertex: one per epoch unless exportLastCheckpointOnly
    continued_from: str | None = None  # Vertex continuous tuning: the pre-tuned model version it started from
    base_model: str | None = None      # the Google base model (continuous tuning: preTunedModel.baseModel)
    # Vertex tuningDataStats.supervisedTuningDataStats (reference §3): what the service counted and dropped
    billable_tokens: int | None = None         # totalBillableTokenCount
    dropped_count: int | None = None           # totalTruncatedExampleCount ("dropped": too many tokens, …)
    dropped: tuple[tuple[int, str], ...] = ()  # (1-based index in the training file, reason): "a partial sample"

    @property
    def terminal(self) -> bool:
        return is_terminal(self.state)

    @property
    def succeeded(self) -> bool:
        return self.state == SUCCEEDED

    @property
    def poll_name(self) -> str:
        """What to poll and cancel: the Vertex job, or the Gemini API operation (it carries progress and loss)."""
        return self.operation or self.name

    @property
    def latest_loss(self) -> float | None:
        return self.loss_history[-1].loss if self.loss_history else None

    def describe(self) -> str:
        """One log line: state, progress and latest loss."""
        bits = [self.state.removeprefix("JOB_STATE_")]
        if self.sub_state:
            bits.append(self.sub_state.removeprefix("TUNING_JOB_STATE_"))
        if self.progress_percent is not None:
            bits.append(f"{self.progress_percent:.1f}%")
        if self.completed_steps is not None and self.total_steps:
            bits.append(f"step {self.completed_steps}/{self.total_steps}")
        if self.latest_loss is not None:
            bits.append(f"loss {self.latest_loss:.4f}")
        if self.error_message:
            bits.append(f"error {self.error_code}: {self.error_message}")
        return " | ".join(bits)

    def summary(self, max_loss_points: int = 200) -> dict:
        """Small JSON for XCom: no data, no credentials; the loss and validation histories are each thinned to
        ``max_loss_points`` (keeping the last point)."""
        d = asdict(self)
        d["loss_history"] = _thin(self.loss_history, max_loss_points)
        d["validation_history"] = _thin(self.validation_history, max_loss_points)
        d["latest_loss"] = self.latest_loss
        d["checkpoints"] = [asdict(c) for c in self.checkpoints]
        d["dropped"] = [[i, r] for i, r in self.dropped]
        return d

    @classmethod
    def from_summary(cls, d: dict) -> JobStatus:
        d = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        d["loss_history"] = tuple(LossPoint(*p) for p in d.get("loss_history") or ())
        d["validation_history"] = tuple(LossPoint(*p) for p in d.get("validation_history") or ())  # older: none
        d["checkpoints"] = tuple(Checkpoint(**c) for c in d.get("checkpoints") or ())
        d["dropped"] = tuple((int(i), str(r)) for i, r in d.get("dropped") or ())
        return cls(**d)


def _thin(points, max_points: int) -> list[list]:
    """``[[step, epoch, loss], ...]`` of at most about ``max_points`` evenly strided points, always with the last."""
    hist = list(points)
    if len(hist) > max_points:
        stride = -(-len(hist) // max_points)
        hist = hist[::stride] + ([hist[-1]] if (len(hist) - 1) % stride else [])
    return [[p.step, p.epoch, p.loss] for p in hist]
