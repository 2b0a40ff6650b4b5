"""Training orchestration shared by Vertex tuning jobs and Gemini API tuned models.

A job's life is derived from wall-clock time and persisted facts, so it survives an emulator restart:
    created ──(pending_s)──► RUNNING ──(steps × step_s)──► SUCCEEDED     (never before real training has finished)
The real learner runs in a worker thread as soon as the job is created; after a restart, a job whose training had
not finished is trained again from its data (training is deterministic, so the result is the same).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

import requests

from . import learner

log = logging.getLogger("emulator.training")


class DataError(Exception):
    """The training data could not be read or parsed: the job fails asynchronously, like on Google Cloud."""


def read_gcs_jsonl(gcs_url: str | None, uri: str, *, limit: int, what: str = "Training data") -> list[dict]:
    """Reads a JSONL object from the GCS emulator (streamed; at most ``limit`` examples). ``what`` names the file
    in error messages (e.g. ``"Validation data"``)."""
    import json

    if not gcs_url:
        raise DataError("the emulator has no GCS emulator configured (gcs_url)")
    bucket, _, name = uri[len("gs://"):].partition("/")
    url = f"{gcs_url}/download/storage/v1/b/{quote(bucket, safe='')}/o/{quote(name, safe='')}?alt=media"
    try:
        with requests.get(url, stream=True, timeout=30) as resp:
            if resp.status_code == 404:
                raise DataError(f"{what} {uri} does not exist or is not readable.")
            resp.raise_for_status()
            rows = []
            for lineno, raw in enumerate(resp.iter_lines(), start=1):
                if not raw.strip():
                    continue
                try:
                    rows.append((lineno, json.loads(raw)))
                except ValueError as exc:
                    raise DataError(f"{what} {uri} line {lineno} is not valid JSON: {exc}") from None
                if len(rows) >= limit:
                    break
            return rows
    except requests.RequestException as exc:
        raise DataError(f"{what} {uri} could not be read: {exc}") from None


@dataclass
class Timeline:
    state: str                 # PENDING | RUNNING | SUCCEEDED | FAILED | CANCELLED
    completed_steps: int = 0
    total_steps: int | None = None
    start_time: float | None = None
    end_time: float | None = None
    error: dict | None = None

    @property
    def percent(self) -> float:
        return 100.0 * self.completed_steps / self.total_steps if self.total_steps else 0.0


def timeline(emu: dict, now: float, live_progress: int | None) -> Timeline:
    """Derives a job's state from its persisted facts (``emu``) and the clock."""
    steps = emu.get("steps")
    run_start = None
    if steps is not None:
        run_start = max(emu["created"] + emu["pending_s"], emu.get("data_ready") or emu["created"])
    if emu.get("cancelled_at") is not None:
        done = len(emu.get("losses") or []) if emu.get("trained") else (live_progress or 0)
        return Timeline("CANCELLED", min(done, steps or 0), steps, run_start, emu["cancelled_at"],
                        {"code": 1, "message": "CANCELLED"})
    if emu.get("error") is not None:
        at = max(emu["created"] + emu["pending_s"], emu.get("error_at") or 0)
        if now >= at:
            return Timeline("FAILED", 0, steps, run_start, at, emu["error"])
        return Timeline("PENDING", 0, steps)
    if steps is None or now < run_start:
        return Timeline("PENDING", 0, steps)
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


class Trainer:
    """Runs the learner for one resource in the emulator's thread pool and reports back on the event loop."""

    def __init__(self, emulator):
        self.emu = emulator
        self.progress: dict[str, int] = {}
        self._running: set[str] = set()

    def start(self, key: str, load: Callable[[], list[learner.Example]], hp: learner.HyperParams,
              on_data: Callable[[int], None],
              on_done: Callable[..., None], *,
              init_artifact: str | None = None, checkpoints: bool = False,
              validation: Callable[[], list[learner.Example]] | None = None) -> None:
        """Trains ``key`` in the background. ``init_artifact``: warm-start from that saved model (continuous
        tuning); ``checkpoints``: also save the model after every epoch as :func:`checkpoint_artifact`.

        ``validation``: a loader of validation examples (run after ``load``, in the thread pool; a
        :class:`DataError` from it or an empty set fails the job like bad training data). The model's
        :meth:`~learner.TunedModel.mean_loss` on them is computed after every epoch, and ``on_done`` is then called
        with a third argument: ``[[step, epoch, loss], ...]`` (one per epoch, ``step`` the epoch's last step;
        None when training failed). Without ``validation``, ``on_done(records, exc)`` as before."""
        if key in self._running:
            return
        self._running.add(key)
        self.emu.spawn(self._run(key, load, hp, on_data, on_done, init_artifact, checkpoints, validation))

    async def _run(self, key, load, hp, on_data, on_done, init_artifact, checkpoints, validation=None) -> None:
        loop = asyncio.get_running_loop()
        self.progress[key] = 0
        store = self.emu.store

        def done(records, exc, val_losses=None) -> None:
            if validation is None:
                on_done(records, exc)
            else:
                on_done(records, exc, val_losses)

        try:
            try:
                examples = await loop.run_in_executor(self.emu.executor, load)
                if not examples:
                    raise DataError("The training dataset has no usable examples.")
                val_examples = None
                if validation is not None:
                    val_examples = await loop.run_in_executor(self.emu.executor, validation)
                    if not val_examples:
                        raise DataError("The validation dataset has no usable examples.")
                init = None
                if init_artifact is not None:
                    try:
                        init = learner.TunedModel.load(store.artifact_path(init_artifact))
                    except (OSError, ValueError) as exc:
                        raise DataError(f"The pre-tuned model's weights could not be read: {exc}") from None
            except DataError as exc:
                done(None, exc)
                return
            on_data(len(examples))
            last_step = 0
            val_losses: list[list] = []

            def step(rec: learner.StepRecord) -> None:
                nonlocal last_step
                last_step = self.progress[key] = rec.step

            def epoch_done(epoch: int, model: learner.TunedModel) -> None:
                if checkpoints:
                    model.save(store.artifact_path(checkpoint_artifact(key, epoch)))
                if val_examples is not None:
                    val_losses.append([last_step, epoch, model.mean_loss(val_examples)])

            def work():
                t0 = time.perf_counter()
                model, records = learner.train(examples, hp, on_step=step, init=init,
                                               on_epoch=epoch_done if checkpoints or val_examples is not None else None)
                model.save(store.artifact_path(key))
                log.info("trained %s: %d examples, %d steps, %.2fs", key, len(examples), len(records),
                         time.perf_counter() - t0)
                return records

            records = await loop.run_in_executor(self.emu.executor, work)
            done(records, None, val_losses)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("training %s failed", key)
            done(None, exc)
        finally:
            self._running.discard(key)
            self.progress.pop(key, None)


def checkpoint_artifact(key: str, epoch: int) -> str:
    """The artifact of one epoch's checkpoint of a job (its weights after that epoch)."""
    return f"{key}#checkpoint-{epoch}"


def new_emu_state(emu_config, *, hp: learner.HyperParams, fail_plan, now: float) -> dict:
    scale = emu_config.time_scale
    return {"created": now, "pending_s": emu_config.pending_seconds * scale,
            "step_s": emu_config.step_seconds * scale, "steps": None, "n_examples": None,
            "hp": {"epochs": hp.epochs, "learning_rate": hp.learning_rate, "batch_size": hp.batch_size,
                   "adapter_rank": hp.adapter_rank, "seed": hp.seed},
            "fail_plan": fail_plan, "trained": False, "losses": None, "error": None, "cancelled_at": None}


def hp_from_emu(emu: dict) -> learner.HyperParams:
    return learner.HyperParams(**emu["hp"])
