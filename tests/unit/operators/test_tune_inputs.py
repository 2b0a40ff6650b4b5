"""The tuning operator's inputs before anything is read or created: where the intent records live."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

pytestmark = pytest.mark.fast


class _Ti(SimpleNamespace):
    def xcom_push(self, key, value):
        self.pushed[key] = value


def context():
    return {"ti": _Ti(pushed={}, dag_id="d", task_id="tune", run_id="r", map_index=-1),
            "dag_run": SimpleNamespace(run_type="manual")}


def operator(reads: list, **kwargs):
    from gemini_tuning.operators.tune import GeminiTuningOperator

    op = GeminiTuningOperator(task_id="tune", base_model="gemini-2.5-flash", backend="vertex", **kwargs)
    op.__dict__["hook"] = SimpleNamespace(api_base_url="http://emulator.invalid",
                                          storage=lambda: reads.append("storage") or SimpleNamespace(),
                                          registry=lambda *a: reads.append("registry") or SimpleNamespace())
    return op


@pytest.mark.parametrize("uri", ["s3://acme-ml/train.jsonl", "/srv/data/train.jsonl", "gs:/acme-ml/train.jsonl"])
def test_a_training_uri_that_is_not_gs_fails_clearly_before_any_read(uri):
    """Before: ``training_uri[5:]`` took ``s3://acme-ml/…`` for the GCS bucket ``acme-ml`` (someone else's bucket)
    and read the intent record and the champion pointer there before the spec check caught the URI."""
    from airflow.sdk.exceptions import AirflowFailException

    reads: list = []
    op = operator(reads, training_uri=uri, continue_from="champion", champion_pointer_uri="gs://acme-ml/champion.json")
    with pytest.raises(AirflowFailException, match=r"nothing was created: training_uri .*not a gs:// URI"):
        op.execute(context())
    assert reads == []


def test_a_state_uri_that_is_not_gs_fails_clearly_before_any_read():
    from airflow.sdk.exceptions import AirflowFailException

    reads: list = []
    op = operator(reads, training_uri="gs://acme-ml/train.jsonl", state_uri="acme-ml/state")
    with pytest.raises(AirflowFailException, match=r"nothing was created: state_uri .*not a gs:// URI"):
        op.execute(context())
    assert reads == []
