"""The validation loss: a Vertex tuning job with ``validationDatasetUri`` computes the loss on the validation set after
every epoch (emulator/training.py, ``TunedModel.mean_loss``), writes it into ``{gcsMetricsUri}metrics.jsonl`` as
``eval_total_loss`` rows next to the ``train_total_loss`` rows, and the plugin reads it into
``JobStatus.validation_history``."""

from __future__ import annotations

import json
import math

import pytest

from harness.clients import BUCKET, PROJECT, genai_vertex_client
from harness.data import demo_rows
from harness.waits import wait_for, wait_until

pytestmark = pytest.mark.fast

EPOCHS = 3


def _jsonl(rows) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def _tune(emulator, train_uri: str, val_uri: str):
    from google.genai import types

    client = genai_vertex_client(emulator.endpoints.url)
    job = client.tunings.tune(
        base_model="gemini-2.5-flash", training_dataset=types.TuningDataset(gcs_uri=train_uri),
        config=types.CreateTuningJobConfig(epoch_count=EPOCHS,
                                           validation_dataset=types.TuningValidationDataset(gcs_uri=val_uri)))
    return wait_until(lambda: client.tunings.get(name=job.name), lambda j: j.has_ended, timeout=60)


def _metrics_rows(gcs_client, metrics_uri: str, steps: int) -> list[dict]:
    """The metrics file once it holds every step (it is written asynchronously after the job's last tick)."""
    bucket, _, prefix = metrics_uri[len("gs://"):].partition("/")
    blob = gcs_client.bucket(bucket).blob(prefix + "metrics.jsonl")

    def complete():
        if not blob.exists():
            return None
        rows = [json.loads(line) for line in blob.download_as_text().splitlines() if line.strip()]
        return rows if sum("train_total_loss" in r for r in rows) == steps else None

    return wait_for(complete, 30, "the complete metrics file")


def test_validation_loss_per_epoch_reaches_the_metrics_file_and_the_job_status(emulator, upload, gcs_client,
                                                                              monkeypatch):
    from google.genai import types

    rows = demo_rows("train.jsonl")
    job = _tune(emulator, upload(_jsonl(rows[:24])), upload(_jsonl(rows[24:48])))
    assert job.state == types.JobState.JOB_STATE_SUCCEEDED, job.error
    assert job.supervised_tuning_spec.validation_dataset_uri.startswith(f"gs://{BUCKET}/")
    steps = job.tuning_data_stats.supervised_tuning_data_stats.tuning_step_count
    per_epoch = steps // EPOCHS

    # the emulator's job state keeps one [step, epoch, loss] per epoch
    stored = emulator.emulator.store.get("tuningJobs", job.name)["emu"]["val_losses"]
    assert [(st, ep) for st, ep, _ in stored] == [(per_epoch * k, k) for k in range(1, EPOCHS + 1)]

    rows = _metrics_rows(gcs_client, job.gcs_metrics_uri, steps)
    evals = [r for r in rows if "eval_total_loss" in r]
    assert [(r["step"], r["epoch"]) for r in evals] == [(per_epoch * k, k) for k in range(1, EPOCHS + 1)]
    assert all(math.isfinite(r["eval_total_loss"]) and r["eval_total_loss"] > 0 for r in evals)
    assert [r["eval_total_loss"] for r in evals] == pytest.approx([loss for _, _, loss in stored])
    assert all(set(r) == {"step", "epoch", "eval_total_loss", "wall_time"} for r in evals)
    train = {r["step"]: r for r in rows if "train_total_loss" in r}
    assert sorted(train) == list(range(1, steps + 1))
    assert all(r["wall_time"] == train[r["step"]]["wall_time"] for r in evals)
    # an eval row follows its epoch's last train row
    assert all(rows.index(train[r["step"]]) + 1 == rows.index(r) for r in evals)

    # the plugin: the backend reads both series from the metrics file
    from gemini_tuning.backends.vertex import parse_metrics
    from gemini_tuning.core.states import JobStatus
    from gemini_tuning.hooks import GeminiTuningHook

    monkeypatch.setenv("AIRFLOW_CONN_EMU", json.dumps({"conn_type": "google_cloud_platform",
                                                       "extra": {"is_anonymous": True, "project": PROJECT}}))
    backend = GeminiTuningHook("emu", api_base_url=emulator.endpoints.url).backend("vertex", project_id=PROJECT)
    status = backend.with_loss(backend.get(job.name))
    assert [(p.step, p.epoch) for p in status.validation_history] == [(per_epoch * k, k)
                                                                      for k in range(1, EPOCHS + 1)]
    assert [p.loss for p in status.validation_history] == pytest.approx([r["eval_total_loss"] for r in evals])
    assert len(status.loss_history) == steps
    assert JobStatus.from_summary(status.summary()).validation_history == status.validation_history
    points = parse_metrics("\n".join(json.dumps(r) for r in rows))
    assert tuple(points) == status.loss_history and points.validation == status.validation_history


def test_a_bad_validation_file_fails_the_job_like_bad_training_data(emulator, upload):
    from google.genai import types

    rows = demo_rows("train.jsonl", 24)
    bad = _jsonl(rows[:3]) + json.dumps({"contents": [{"role": "user", "parts": [{"text": "no answer"}]}]}) + "\n"
    job = _tune(emulator, upload(_jsonl(rows)), upload(bad))
    assert job.state == types.JobState.JOB_STATE_FAILED
    assert "validation example at line 4" in job.error.message

    job = _tune(emulator, upload(_jsonl(rows)), f"gs://{BUCKET}/data/no-such-validation-file.jsonl")
    assert job.state == types.JobState.JOB_STATE_FAILED
    assert job.error.message.startswith("Validation data gs://") and "does not exist" in job.error.message
