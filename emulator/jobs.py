"""The life of a training job, one for Vertex tuning jobs and Gemini API tuned models.

A job's state is derived from wall-clock time and persisted facts, so it survives an emulator restart:
    created ──(quota_s)──(pending_s)──(capacity_s)──► RUNNING ──(steps × step_s)──► SUCCEEDED
       │                                                 │        (never before real training has finished)
       │                                                 ├──(an injected failure's fraction of the steps)──► FAILED
       └──(bad data: at the end of quota_s + pending_s at the earliest)──► FAILED  cancel, at any time ──► CANCELLED
While PENDING, :attr:`Timeline.sub_state` says which wait it is in: ``WAITING_FOR_QUOTA`` (``quota_s``, Vertex only,
config ``quota_wait_seconds``), ``PROCESSING_DATASET`` (``pending_s``, and for as long as reading the data takes),
``WAITING_FOR_CAPACITY`` (``capacity_s``, Vertex only, config ``capacity_wait_seconds``). Jobs without ``quota_s`` /
``capacity_s`` in their facts (Gemini API tuned models, jobs stored before) wait 0 s in those.
Durations are the config's nominal ones times ``time_scale``, fixed when the job is created (:func:`new_emu_state`).

:class:`JobLifecycle` owns that state for one store collection: it creates a job and starts its training
(:class:`~.training.Trainer`), records what training reports (the data's size, the losses, a data error), advances
every live job on the emulator's ticker, restarts unfinished training after a restart (training is deterministic,
so the result is the same), and cancels. What a state looks like on the wire is the surface's: each service passes
an ``advance`` hook that writes the :class:`Timeline` into its resource, and an ``inputs`` hook that says where a
job's training data comes from.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from dataclasses import dataclass
from functools import partial

from . import learner
from .training import Trainer

ENDED = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})   # Timeline states a job never leaves


@dataclass
class Timeline:
    state: str                 # PENDING | RUNNING | SUCCEEDED | FAILED | CANCELLED
    completed_steps: int = 0
    total_steps: int | None = None
    start_time: float | None = None
    end_time: float | None = None
    error: dict | None = None
    sub_state: str | None = None   # PENDING only: WAITING_FOR_QUOTA | PROCESSING_DATASET | WAITING_FOR_CAPACITY

    @property
    def percent(self) -> float:
        return 100.0 * self.completed_steps / self.total_steps if self.total_steps else 0.0


def timeline(emu: dict, now: float, live_progress: int | None) -> Timeline:
    """Derives a job's state from its persisted facts (``emu``) and the clock."""
    steps = emu.get("steps")
    data_start = emu["created"] + (emu.get("quota_s") or 0.0)   # the quota wait is over, the dataset is processed
    capacity_s = emu.get("capacity_s") or 0.0
    run_start = None
    if steps is not None:
        run_start = max(data_start + emu["pending_s"], emu.get("data_ready") or emu["created"]) + capacity_s

    def pending() -> Timeline:
        if now < data_start:
            sub = "WAITING_FOR_QUOTA"
        elif run_start is None or now < run_start - capacity_s:
            sub = "PROCESSING_DATASET"
        else:
            sub = "WAITING_FOR_CAPACITY"
        return Timeline("PENDING", 0, steps, sub_state=sub)
    if emu.get("cancelled_at") is not None:
        done = len(emu.get("losses") or []) if emu.get("trained") else (live_progress or 0)
        return Timeline("CANCELLED", min(done, steps or 0), steps, run_start, emu["cancelled_at"],
                        {"code": 1, "message": "CANCELLED"})
    if emu.get("error") is not None:
        at = max(data_start + emu["pending_s"], emu.get("error_at") or 0)
        if now >= at:
            return Timeline("FAILED", 0, steps, run_start, at, emu["error"])
        return Timeline("PENDING", 0, steps, sub_state="WAITING_FOR_QUOTA" if now < data_start
                        else "PROCESSING_DATASET")
    if steps is None or now < run_start:
        return pending()
    run_s = steps * emu["step_s"]
    frac = 1.0 if run_s <= 0 else min(1.0, (now - run_start) / run_s)
    plan = emu.get("fail_plan")
    if plan and frac >= plan["at_fraction"]:
        end = run_start + plan["at_fraction"] * run_s
        done = int(plan["at_fraction"] * steps)
        return Timeline("FAILED", done, steps, run_start, end, {"code": plan["code"], "message": plan["message"]})
    real_done = steps if emu.get("trained") else (live_progress or 0)
    done = min(int(math.floor(frac * steps)), real_done)
    if frac < 1.0 or not emu.get("trained"):
        return Timeline("RUNNING", done, steps, run_start)
    return Timeline("SUCCEEDED", steps, steps, run_start, max(run_start + run_s, emu.get("trained_at") or 0))


def new_emu_state(emu_config, *, hp: learner.HyperParams, fail_plan, now: float) -> dict:
    scale = emu_config.time_scale
    return {"created": now, "pending_s": emu_config.pending_seconds * scale,
            "step_s": emu_config.step_seconds * scale, "steps": None, "n_examples": None,
            "hp": {"epochs": hp.epochs, "learning_rate": hp.learning_rate, "batch_size": hp.batch_size,
                   "adapter_rank": hp.adapter_rank, "seed": hp.seed},
            "fail_plan": fail_plan, "trained": False, "losses": None, "error": None, "cancelled_at": None}


def hp_from_emu(emu: dict) -> learner.HyperParams:
    return learner.HyperParams(**emu["hp"])


@dataclass(frozen=True)
class TrainingInputs:
    """Where a job's training starts from (see :meth:`~.training.Trainer.start`)."""

    load: Callable[[], list[learner.Example]]
    validation: Callable[[], list[learner.Example]] | None = None
    init_artifact: str | None = None
    checkpoints: bool = False
    # train(examples, hp, on_step=, init=, on_epoch=) -> (model, records): the objective (default learner.train,
    # supervised); val_loss(model, validation_examples) -> float: the per-epoch validation loss (default mean_loss)
    train: Callable | None = None
    val_loss: Callable | None = None
    # on_data(emu) is called when the data has been read, with the job's persisted facts (saved afterwards): a
    # surface's hook to record what it learnt about the data while loading it (e.g. data statistics)
    on_data: Callable[[dict], None] | None = None


# advance(name, stored_object, timeline, now) -> True when it changed the stored object (it is then saved)
Advance = Callable[[str, dict, Timeline, float], bool]


class JobLifecycle:
    """The training jobs of one store collection, each stored as ``{"resource": {...}, "emu": {...}}``.

    ``terminal``: the resource states (``resource["state"]``) of a finished job, which a restart leaves alone.
    ``inputs(name, emu)``: the job's :class:`TrainingInputs`. ``advance``: see :data:`Advance`; a job whose
    timeline has ended is no longer ticked after it.
    """

    def __init__(self, emu, collection: str, *, terminal: Collection[str],
                 inputs: Callable[[str, dict], TrainingInputs], advance: Advance):
        self.emu = emu
        self.store = emu.store
        self.collection = collection
        self.terminal = frozenset(terminal)
        self._inputs = inputs
        self._advance = advance
        self.trainer = Trainer(emu)
        self.active: set[str] = set()
        emu.tickers.append(self.tick)
        emu.startup_hooks.append(self.resume)

    # ------------------------------------------------------------------------------------------- a job's life
    def new_state(self, *, hp: learner.HyperParams, display_name: str, now: float) -> dict:
        """The persisted facts of a new job (an injected failure for ``display_name`` is taken now)."""
        plan = self.emu.faults.take_job_failure(display_name)
        return new_emu_state(self.emu.config, hp=hp, fail_plan=plan.to_dict() if plan else None, now=now)

    def create(self, name: str, resource: dict, emu_state: dict) -> None:
        """Stores a new job and starts training it."""
        self.store.put(self.collection, name, {"resource": resource, "emu": emu_state})
        self.active.add(name)
        self._train(name)

    def timeline(self, name: str, emu_state: dict, now: float | None = None) -> Timeline:
        return timeline(emu_state, self.emu.now() if now is None else now, self.trainer.progress.get(name))

    def tick(self, now: float, only: str | None = None) -> None:
        """Advances live jobs (every one from the ticker; ``only`` one when a request asks about it)."""
        for name in ([only] if only is not None else list(self.active)):
            if name not in self.active:
                continue
            obj = self.store.get(self.collection, name)
            if obj is None:
                self.active.discard(name)
                continue
            tl = self.timeline(name, obj["emu"], now)
            changed = self._advance(name, obj, tl, now)
            if tl.state in ENDED:
                self.active.discard(name)
            if changed:
                self.store.put(self.collection, name, obj)

    def cancel(self, name: str, obj: dict) -> None:
        """Cancels a job (the caller has checked that it may be cancelled) and advances it at once."""
        obj["emu"]["cancelled_at"] = self.emu.now()
        self.store.put(self.collection, name, obj)
        self.tick(self.emu.now(), only=name)

    def forget(self, name: str) -> None:
        """The job was deleted: stop ticking it (a training still running finds no job and records nothing)."""
        self.active.discard(name)

    def resume(self) -> None:
        """After a restart: pick up every job that has not reached a terminal state."""
        for name, obj in self.store.items(self.collection):
            if obj["resource"]["state"] in self.terminal:
                continue
            self.active.add(name)
            e = obj["emu"]
            if not e.get("trained") and e.get("error") is None and e.get("cancelled_at") is None:
                self._train(name)

    # ------------------------------------------------------------------------------------------- training
    def _train(self, name: str) -> None:
        e = self.store.get(self.collection, name)["emu"]
        inputs = self._inputs(name, e)
        self.trainer.start(name, inputs.load, hp_from_emu(e), partial(self._data_ready, name, inputs.on_data),
                           partial(self._trained, name), init_artifact=inputs.init_artifact,
                           checkpoints=inputs.checkpoints, validation=inputs.validation,
                           **{k: v for k, v in (("train_fn", inputs.train), ("val_loss", inputs.val_loss))
                              if v is not None})

    def _data_ready(self, name: str, on_data, n_examples: int) -> None:
        cur = self.store.get(self.collection, name)
        if cur is None:
            return
        e = cur["emu"]
        if on_data is not None:
            on_data(e)
        e["n_examples"] = n_examples
        e["steps"] = learner.planned_steps(n_examples, hp_from_emu(e))
        e["data_ready"] = self.emu.now()
        self.store.put(self.collection, name, cur)

    def _trained(self, name: str, records, exc, val_losses=None) -> None:
        cur = self.store.get(self.collection, name)
        if cur is None:
            return
        e = cur["emu"]
        if exc is not None:
            e["error"] = {"code": 3, "message": str(exc)}
            e["error_at"] = self.emu.now()
        else:
            e["trained"] = True
            e["trained_at"] = self.emu.now()
            e["losses"] = [[r.step, r.epoch, r.loss] for r in records]
            if val_losses is not None:      # one [step, epoch, loss] per epoch (a validation dataset was given)
                e["val_losses"] = [list(v) for v in val_losses]
        self.store.put(self.collection, name, cur)
        self.tick(self.emu.now(), only=name)
