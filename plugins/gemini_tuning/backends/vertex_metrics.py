"""The training metrics a Vertex tuning job writes to its ``gcsMetricsUri``: one parse of the JSONL rows into train
and validation loss points (``LossPoint``), used by the worker and the trigger alike (split from ``backends.vertex``,
which re-exports every name)."""

from __future__ import annotations

import dataclasses
import json

from ..core.states import JobStatus, LossPoint


class MetricPoints(tuple):
    """What :func:`parse_metrics` returns: the training loss points (a plain tuple of ``LossPoint`` in step order,
    as before) and, in ``validation``, the validation loss points (empty without a validation dataset).

    :param train: the training loss points, in step order; they are the tuple's items.
    :param validation: the validation loss points, kept in :attr:`validation` (empty: no validation dataset).
    """

    validation: tuple[LossPoint, ...]

    def __new__(cls, train=(), validation=()):
        self = super().__new__(cls, train)
        self.validation = tuple(validation)
        return self


TRAIN_LOSS_KEYS = ("train_total_loss", "/train_total_loss", "loss")
VALIDATION_LOSS_KEYS = ("eval_total_loss", "/eval_total_loss")


def _metric_point(row: dict, keys: tuple[str, ...]) -> LossPoint | None:
    loss = next((row[k] for k in keys if k in row), None)
    step = row.get("step")
    if isinstance(loss, bool) or not isinstance(loss, (int, float)) or step is None:
        return None
    try:
        epoch = int(row["epoch"]) if row.get("epoch") is not None else None
        return LossPoint(int(step), epoch, float(loss))
    except (TypeError, ValueError):
        return None


def parse_metrics(text: str) -> MetricPoints:
    """Training and validation loss from the job's metrics file (``gcsMetricsUri``).

    [unverified format] Google does not document the file; this reads JSONL rows carrying a step and one of
    ``train_total_loss`` / ``/train_total_loss`` / ``loss`` (training) or ``eval_total_loss`` /
    ``/eval_total_loss`` (validation, when the job has a validation dataset) -- the metric names the Vertex console
    shows, which is what the emulator writes; a row may carry both. The result is the tuple of training points
    (step order) with the validation points in ``.validation``. Rows it cannot read are skipped, never fatal: loss
    is reporting, not control.
    """
    train, validation = [], []
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if not isinstance(row, dict):
            continue
        for keys, points in ((TRAIN_LOSS_KEYS, train), (VALIDATION_LOSS_KEYS, validation)):
            point = _metric_point(row, keys)
            if point is not None:
                points.append(point)
    return MetricPoints(sorted(train, key=lambda p: p.step), sorted(validation, key=lambda p: p.step))


METRICS_SUFFIXES = (".jsonl", ".json")


def _with_points(status: JobStatus, texts: list[str]) -> JobStatus:
    """``status`` with the train and validation loss read from the metrics file(s); a series the files do not
    carry keeps what ``status`` had."""
    points = parse_metrics("\n".join(texts))
    changes = {}
    if points:
        changes["loss_history"] = tuple(points)
    if points.validation:
        changes["validation_history"] = points.validation
    return dataclasses.replace(status, **changes) if changes else status
