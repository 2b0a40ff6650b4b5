"""Running the learner for a training job, and reading its data from the GCS emulator.

:class:`Trainer` trains one job in the emulator's thread pool as soon as it is created and reports back on the event
loop; the job's state over time (pending, running, succeeded, failed, cancelled) is :mod:`emulator.jobs`'s.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
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
              validation: Callable[[], list[learner.Example]] | None = None,
              train_fn: Callable | None = None, val_loss: Callable | None = None) -> None:
        """Trains ``key`` in the background. ``init_artifact``: warm-start from that saved model (continuous
        tuning); ``checkpoints``: also save the model after every epoch as :func:`checkpoint_artifact`.

        ``validation``: a loader of validation examples (run after ``load``, in the thread pool; a
        :class:`DataError` from it or an empty set fails the job like bad training data). The model's
        :meth:`~learner.TunedModel.mean_loss` on them is computed after every epoch.

        ``on_data(n_examples)`` is called once the data is read; ``on_done(records, exc, val_losses)`` at the end:
        ``records`` the learner's step records (None when training failed, ``exc`` then says why), ``val_losses``
        ``[[step, epoch, loss], ...]`` (one per epoch, ``step`` the epoch's last step; None without ``validation``
        or when training failed).

        ``train_fn``: the objective, called like :func:`learner.train` (default); ``val_loss(model, val_examples)``:
        the validation loss (default :meth:`~learner.TunedModel.mean_loss`)."""
        if key in self._running:
            return
        self._running.add(key)
        self.emu.spawn(self._run(key, load, hp, on_data, on_done, init_artifact, checkpoints, validation,
                                 train_fn or learner.train, val_loss or (lambda m, ex: m.mean_loss(ex))))

    async def _run(self, key, load, hp, on_data, on_done, init_artifact, checkpoints, validation=None,
                   train_fn=learner.train, val_loss=None) -> None:
        loop = asyncio.get_running_loop()
        self.progress[key] = 0
        store = self.emu.store

        def done(records, exc, val_losses=None) -> None:
            on_done(records, exc, val_losses if validation is not None else None)

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
                    val_losses.append([last_step, epoch, val_loss(model, val_examples)])

            def work():
                t0 = time.perf_counter()
                model, records = train_fn(examples, hp, on_step=step, init=init,
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
