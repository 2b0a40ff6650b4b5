"""The service's data stats, end to end with dag.test() on the emulator: a training file with 5 examples the service
drops (its tokenizer counts more than the plugin's chars / 4 estimate: the emulator's ``max_example_tokens``) is
tuned; the report names those 5 lines of the user's own file with the service's reasons, beside the service's
billable tokens and the estimate; and a policy ``max_dropped_fraction`` below the dropped share fails the gate (the
candidate is deleted), not the tuning."""

from __future__ import annotations

import json
import re
import uuid

import pytest
import requests
from test_dag_e2e import FAST, pipeline, xcom  # noqa: F401  (pipeline: the fixture)

from harness.clients import BUCKET
from harness.paths import DEMO

pytestmark = pytest.mark.fast

NO_LIMITS = {"max_training_tokens": None, "max_cost": None, "price_per_million_training_tokens": None}
OVERSIZE = (4, 41, 97, 200, 333)   # 1-based lines of the source file


def oversize_file(tmp_path):
    """The demo training file with 5 examples made long (about 700 tokens by chars / 4): far under the plugin's
    131,072-token check, over the emulator's limit of 400 set by the test."""
    rows = [json.loads(x) for x in (DEMO / "train.jsonl").read_text().splitlines() if x.strip()]
    for ln in OVERSIZE:
        turn = rows[ln - 1]["contents"][0]["parts"][0]
        turn["text"] += f" Details #{ln}# follow. " + "The parcel tracking page shows no update at all. " * 55
    path = tmp_path / "tickets.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_dropped_examples_are_reported_by_source_line_and_can_fail_the_gate(pipeline, emulator, gcs_client,  # noqa: F811
                                                                            tmp_path):
    from airflow.utils.state import DagRunState

    url = emulator.endpoints.url
    requests.post(f"{url}/_emulator/config", json={"max_example_tokens": 400}, timeout=10).raise_for_status()
    prefix = f"gs://{BUCKET}/data-stats/{uuid.uuid4().hex[:8]}"
    # a validation split: the uploaded file's n-th example is not the source's n-th line
    dr = pipeline.test(run_conf={**FAST, **NO_LIMITS, "training_data": str(oversize_file(tmp_path)),
                                 "validation_fraction": 0.1, "gcs_prefix": prefix, "gate_max_dropped_fraction": 0.01})
    tis = {ti.task_id: ti for ti in dr.get_task_instances()}
    assert tis["tune"].state == "success", {t: ti.state for t, ti in tis.items()}
    tuned, prepared = xcom(tis, "tune"), xcom(tis, "prepare_dataset")
    bucket, name = prepared["train_uri"][5:].split("/", 1)
    uploaded = gcs_client.bucket(bucket).blob(name).download_as_text()
    in_training = [ln for ln in OVERSIZE if f"#{ln}#" in uploaded]   # the split may send some to validation
    assert len(in_training) >= 3
    assert tuned["dropped_count"] == len(in_training) and tuned["billable_tokens"] > 0
    assert [i for i, _ in tuned["dropped"]] != in_training             # the service's indices are the upload's
    gate = xcom(tis, "gate", "gate")
    rule = next(r for r in gate["rules"] if r["name"] == "max_dropped_fraction")
    assert rule["verdict"] == "fail" and rule["observed"] == pytest.approx(len(in_training) / tuned["example_count"])
    assert gate["decision"] == "delete" and tis["delete"].state == "success" and tis["promote"].state == "skipped"
    assert dr.state == DagRunState.SUCCESS                     # a verdict, not a failure

    report = xcom(tis, "report")["report_uri"]
    bucket, name = report[5:].split("/", 1)
    text = re.sub(r"<[^>]+>", " ", gcs_client.bucket(bucket).blob(name).download_as_text())
    listed = [int(n) for n in re.findall(r"line (\d+) of \S*tickets\.jsonl", text)]      # the name as given
    assert listed == in_training, (listed, in_training)
    assert text.count("which exceeds the maximum of 400 tokens per example") == len(in_training)
    assert re.search(r"Billable tokens\s+service [\d,]+ · estimate \(chars / 4\) [\d,]+", text)
    assert f"{len(in_training)} example(s) (" in text
