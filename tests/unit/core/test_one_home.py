"""One home per shared value ("The house, second pass", points 4 and 5): the XCom keys, the bucket-name rule and
``gs://`` parser, the templated boolean, the run page's metrics, the champion pointer's size bound and the create
call's retries each live in one place, and every user takes them from there."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest

from gemini_tuning.core import constants, gcs_uri
from gemini_tuning.core.templated import FALSE_WORDS, TRUE_WORDS, parse_bool

pytestmark = pytest.mark.fast

PLUGIN = Path(__file__).resolve().parents[2] / "plugins" / "gemini_tuning"
ROOT = PLUGIN.parents[1]


def _sources(*folders: Path):
    for folder in folders:
        for path in sorted(folder.rglob("*.py")):
            yield path, path.read_text(encoding="utf-8")


# ------------------------------------------------------------------------------------------------ XCom keys
def test_the_xcom_keys_have_one_home():
    """``gemini_tuning_job`` and the gate's key are written out only in ``core.constants``; the links, the UI and
    the DAG read them from there."""
    from gemini_tuning import links
    from gemini_tuning.ui import records, views

    assert records.XCOM_KEYS == ("return_value", constants.GATE_XCOM, constants.JOB_XCOM)
    assert views.JOB_XCOM is constants.JOB_XCOM
    assert not hasattr(links, "XCOM_KEY")
    home = PLUGIN / "core" / "constants.py"
    literal = re.compile(r"""["']gemini_tuning_job["']|key\s*=\s*["']gate["']|,\s*["']gate["']\)""")
    found = [f"{p.relative_to(ROOT)}:{n}" for p, text in _sources(PLUGIN, ROOT / "dags") if p != home
             for n, line in enumerate(text.splitlines(), 1) if literal.search(line)]
    assert found == []


def test_the_tuning_job_link_reads_the_job_xcom(monkeypatch):
    from gemini_tuning import links

    asked = []
    monkeypatch.setattr(links.XCom, "get_value", lambda key, ti_key: asked.append(key) or {"url": "https://x"})
    assert links.TuningJobLink().get_link(None, ti_key=object()) == "https://x"
    assert asked == [constants.JOB_XCOM]


# ------------------------------------------------------------------------------------------------ gs:// URIs
@pytest.mark.parametrize(("uri", "bucket"), [
    ("gs://my-bucket/a/b.jsonl", "my-bucket"),
    ("gs://a.b_c-1/x", "a.b_c-1"),
    ("gs://abc", "abc"),
    ("gs://abc/", "abc"),
    ("gs://ab/x", None),                    # 2 characters: too short
    ("gs://My-Bucket/x", None),             # upper case
    ("gs://-abc/x", None),                  # must start with a letter or digit
    ("gs://abc-/x", None),                  # ... and end with one
    ("gs://a..b/x", None),                  # '..': refused by the backend, accepted by the old UI/input copies
    ("gs://abc\n", None),                   # a trailing newline: the old '$'-anchored UI regexes accepted it
    ("gs://" + "a" * 223 + "/x", None),     # longer than 222
    ("s3://abc/x", None),
    ("gs:/abc/x", None),
])
def test_one_bucket_rule_for_every_parser(uri, bucket):
    """The backend's parser, the core's, the input policy, the run's own buckets, the demo guard, the UI's prefix
    check and the pipeline file's ``gcs_prefix`` agree on every URI."""
    from gemini_tuning.core.inputs import InputNotAllowed, check_input_location
    from gemini_tuning.core.safety import DEMO_BUCKET, is_demo_location
    from gemini_tuning.pipelines.spec import StorageSpec
    from gemini_tuning.ui.records import _PREFIX_OBJECT

    assert gcs_uri.bucket_of(uri) == bucket
    if bucket is None:
        with pytest.raises(ValueError):
            gcs_uri.split_gs_uri(uri)
        refused = uri[5:].partition("/")[0] if uri.startswith("gs://") else "x"
        with pytest.raises(InputNotAllowed):      # even when the (invalid) bucket is "allowed"
            check_input_location(uri, field="source", roots=(), buckets=(refused,))
        assert not gcs_uri.gs_uri_matches(uri, _PREFIX_OBJECT)
        with pytest.raises(ValueError):
            StorageSpec(gcs_prefix=uri.rstrip("/"))
    else:
        assert gcs_uri.split_gs_uri(uri)[0] == bucket
        assert check_input_location(uri, field="source", roots=(), buckets=(bucket,)) == uri
        assert gcs_uri.gs_uri_matches(uri, _PREFIX_OBJECT)
        assert StorageSpec(gcs_prefix=uri).gcs_prefix == uri.rstrip("/")
    demo = uri.replace(bucket, DEMO_BUCKET, 1) if bucket else uri
    assert bool(is_demo_location(demo)) == (bucket is not None and demo.startswith("gs://"))


def test_the_callers_share_the_core_parser_and_patterns():
    from gemini_tuning.backends import gcs
    from gemini_tuning.pipelines import spec, spec_base

    assert gcs.parse_gs_uri is gcs_uri.split_gs_uri
    assert spec_base.GCS_PREFIX_PATTERN is gcs_uri.GCS_PREFIX_PATTERN is spec.GCS_PREFIX_PATTERN
    home = PLUGIN / "core" / "gcs_uri.py"
    copies = [f"{p.relative_to(ROOT)}" for p, text in _sources(PLUGIN, ROOT / "dags") if p != home
              and ("[a-z0-9][a-z0-9._-]" in text or re.search(r"\[5:\]\.(split|partition)", text))]
    assert copies == []


def test_the_run_dags_params_use_the_core_patterns():
    import importlib

    pipeline = importlib.import_module("dags.gemini_tuning_pipeline")
    rollback = importlib.import_module("dags.gemini_tuning_rollback")
    assert pipeline.PARAMS["gcs_prefix"].schema["pattern"] is gcs_uri.GCS_PREFIX_PATTERN
    assert rollback.OPEN_PARAMS["pointer_uri"].schema["pattern"] is gcs_uri.GCS_OBJECT_PATTERN
    assert f"key='{constants.GATE_XCOM}'" in pipeline.GATE


def test_the_ui_refuses_a_report_in_a_bucket_the_backend_refuses():
    """``gs://a..b/report/x.html`` passed the UI's old report regex (and then failed in the backend): now refused
    before any read, like every other name the parser refuses."""
    from gemini_tuning.ui import data

    for uri in ("gs://a..b/report/x.html", "gs://abc/report/x.html\n", "gs://abc/other/x.html"):
        with pytest.raises(ValueError, match="not a report in GCS"):
            data.report_html(uri)


def test_the_runs_own_buckets_skip_an_invalid_one(monkeypatch):
    from gemini_tuning.operators import inputs

    monkeypatch.setattr(inputs, "_setting", lambda key: "")
    policy = inputs.input_policy(["gs://a..b/x", "gs://good-bucket/y", None, "/local"])
    assert policy.buckets == ("good-bucket",)


# ------------------------------------------------------------------------------------------------ booleans
@pytest.mark.parametrize("word", sorted(TRUE_WORDS | FALSE_WORDS))
def test_the_boolean_words(word):
    expected = word in TRUE_WORDS
    for variant in (word, word.upper(), f"  {word.title()}\n"):
        assert parse_bool(variant) is expected
    assert TRUE_WORDS == {"true", "1", "yes", "on"} and FALSE_WORDS == {"false", "0", "no", "off"}


@pytest.mark.parametrize("value", ["ture", "maybe", "2", "y", "enabled", 2, -1, 0.5, [], {"a": 1}])
def test_any_other_value_is_an_error_naming_it(value):
    with pytest.raises(ValueError, match=rf"^required={re.escape(repr(value))} is not a boolean: expected "
                                         r"true/false, yes/no, on/off or 1/0"):
        parse_bool(value, "required")


def test_bools_ints_and_empty_values():
    assert parse_bool(True) is True and parse_bool(False) is False
    assert parse_bool(1) is True and parse_bool(0) is False
    for empty in (None, "", "None", "  "):
        assert parse_bool(empty, default=True) is True and parse_bool(empty, default=False) is False
        with pytest.raises(ValueError):
            parse_bool(empty)


def test_the_approval_never_takes_a_typo_for_not_required():
    """``required="ture"`` used to skip the human (an unknown word was False); now the task fails, and an empty
    value asks a human."""
    from airflow.sdk.exceptions import AirflowFailException

    from gemini_tuning.operators.approval import GeminiApprovalOperator

    op = GeminiApprovalOperator(task_id="approval", verdict_uri="gs://b/v.json", required="ture")
    op._verdict = lambda context: {"verdict_id": "v1", "policy_hash": "p"}
    with pytest.raises(AirflowFailException, match=r"required='ture' is not a boolean"):
        op.execute({"ti": object()})


@pytest.mark.parametrize(("value", "expected"), [("on", True), ("Yes", True), ("off", False), ("", False),
                                                 ("None", False), (True, True), ("0", False)])
def test_the_evaluation_reads_evaluate_checkpoints_with_the_same_words(value, expected):
    from gemini_tuning.operators.evaluate import GeminiEvaluateOperator

    op = GeminiEvaluateOperator(task_id="evaluate", prompt_set="p.jsonl", challenger={}, results_prefix="gs://b/r",
                                evaluate_checkpoints=value)
    assert op._checkpoints_wanted() is expected


def test_the_evaluation_fails_on_an_unknown_word():
    from airflow.sdk.exceptions import AirflowException

    from gemini_tuning.operators.evaluate import GeminiEvaluateOperator

    op = GeminiEvaluateOperator(task_id="evaluate", prompt_set="p.jsonl", challenger={}, results_prefix="gs://b/r",
                                evaluate_checkpoints="ture")
    with pytest.raises(AirflowException, match="evaluate_checkpoints='ture' is not a boolean"):
        op._checkpoints_wanted()


# ------------------------------------------------------------------------------------------------ run page metrics
def test_the_run_page_shows_every_summary_metric():
    """The chart showed 5 of the 7 summary metrics (no ``contains``, no ``item_metric``), though the gate's primary
    metric may be either: now the vocabulary's list, in the report's order."""
    from gemini_tuning.core.vocabulary import GATE_METRIC_NAMES, JUDGED_METRICS, SUMMARY_METRIC_NAMES
    from gemini_tuning.ui import run_views, views

    assert run_views.SUMMARY_METRICS is SUMMARY_METRIC_NAMES and views.SUMMARY_METRICS is SUMMARY_METRIC_NAMES
    assert set(GATE_METRIC_NAMES) - set(JUDGED_METRICS) <= set(run_views.SUMMARY_METRICS)
    block = {"metrics": {m: 0.5 for m in reversed(SUMMARY_METRIC_NAMES)} | {"unknown": 1.0, "contains": None}}
    shown = run_views._metric_block(block)
    assert list(shown) == [m for m in SUMMARY_METRIC_NAMES if m != "contains"]


# ------------------------------------------------------------------------------------------------ pointer size
def test_one_pointer_bound_for_the_ui_and_the_service():
    from gemini_tuning.services import champion, champion_pointer
    from gemini_tuning.ui import data

    assert data.MAX_POINTER_BYTES is constants.MAX_POINTER_BYTES is champion_pointer.MAX_POINTER_BYTES \
        is champion.MAX_POINTER_BYTES
    assert constants.MAX_POINTER_BYTES == 64 * 1024


def test_the_writer_refuses_a_pointer_its_readers_would_refuse(gcs_client, upload, monkeypatch):
    """A pointer between 64 KiB and 1 MiB used to be written (and read by the services) but shown unreadable by
    the UI; now the writer refuses it before anything is written, and both readers refuse a bigger one alike."""
    from gemini_tuning.backends import gcs
    from gemini_tuning.services.champion import promote, read_champion
    from gemini_tuning.ui import data
    from gemini_tuning.ui.fields import Unreadable

    bucket, _ = gcs_uri.split_gs_uri(upload(b"{}"))          # the emulator's test bucket
    name = f"one-home/{uuid.uuid4().hex}/champion.json"
    uri = f"gs://{bucket}/{name}"
    cand = {"backend": "gemini_api", "tuned_model": "tunedModels/one-home"}
    big = {"run_id": "r1", "dag_id": "d", "metrics": {"pad": "x" * constants.MAX_POINTER_BYTES}}
    with pytest.raises(gcs.ObjectTooLarge, match=rf"more than the {constants.MAX_POINTER_BYTES:,} allowed for a "
                                                 "champion pointer"):
        promote(gcs_client, uri, cand, expected_generation=0, registry=None, run=big)
    assert read_champion(gcs_client, uri) == (None, 0)                  # nothing was written

    out = promote(gcs_client, uri, cand, expected_generation=0, registry=None, run={"run_id": "r1", "dag_id": "d"})
    assert out["status"] == "promoted" and read_champion(gcs_client, uri)[0]["tuned_model"] == cand["tuned_model"]

    # written by hand, between the UI's old bound and the service's old one: refused by both readers
    gcs_client.bucket(bucket).blob(name).upload_from_string(json.dumps(
        {"backend": "gemini_api", "tuned_model": "tunedModels/x", "pad": "x" * (100 * 1024)}))
    with pytest.raises(gcs.ObjectTooLarge):
        read_champion(gcs_client, uri)
    monkeypatch.setattr(data, "storage", lambda: gcs_client)
    monkeypatch.setattr(data, "_pointers", {})
    with pytest.raises(Unreadable, match="ObjectTooLarge"):
        data.pointer(uri)


# ------------------------------------------------------------------------------------------------ create retries
class _Backend:
    """A tuning backend whose create fails transiently ``failures`` times (``created_anyway``: the failed call had
    in fact created the job), recording every call in order."""

    kind = "vertex"

    def __init__(self, failures: int, created_anyway: bool = False):
        self.failures, self.created_anyway = failures, created_anyway
        self.calls: list[str] = []
        self.job = None

    def create(self, spec, identity):
        from gemini_tuning.core.states import JobStatus

        self.calls.append("create")
        job = JobStatus(backend="vertex", name=f"jobs/{len(self.calls)}", state="JOB_STATE_PENDING")
        if self.failures:
            self.failures -= 1
            if self.created_anyway:
                self.job = job
            raise ConnectionResetError("reset by peer")
        self.job = job
        return job

    def find(self, identity):
        self.calls.append("find")
        return self.job


def _launcher(backend, sleeps, **kw):
    from gemini_tuning.services.idempotence import JobLauncher

    return JobLauncher(backend, store=None, key="kabc", fingerprint="f1", sleep=sleeps.append, **kw)


def test_create_retries_through_the_shared_policy(monkeypatch):
    """Two transient failures, then success: three creates, each retry after looking the job up, the pauses drawn
    by ``backends.retry`` under the create policy's caps (2 s, then 4 s)."""
    from gemini_tuning.backends import retry
    from gemini_tuning.services import idempotence

    used = []
    real = retry.call
    monkeypatch.setattr(retry, "call", lambda policy, fn, **kw: used.append(policy) or real(policy, fn, **kw))
    backend, sleeps = _Backend(failures=2), []
    status = _launcher(backend, sleeps)._create(spec=None, attempt=1)
    assert status.name == "jobs/5"
    assert backend.calls == ["create", "find", "create", "find", "create"]
    assert used == [idempotence.CREATE_RETRY]
    assert idempotence.CREATE_RETRY == retry.RetryPolicy(attempts=3, initial_delay=2.0, max_delay=30.0,
                                                         total_seconds=None)
    assert len(sleeps) == 2 and 0 <= sleeps[0] <= 2.0 and 0 <= sleeps[1] <= 4.0


def test_an_ambiguous_failure_that_created_the_job_is_not_paid_twice():
    backend, sleeps = _Backend(failures=1, created_anyway=True), []
    status = _launcher(backend, sleeps)._create(spec=None, attempt=1)
    assert status.name == "jobs/1" and backend.calls == ["create", "find"] and len(sleeps) == 1


def test_the_last_transient_error_is_raised_and_others_at_once():
    backend, sleeps = _Backend(failures=5), []
    with pytest.raises(ConnectionResetError):
        _launcher(backend, sleeps, create_attempts=2)._create(spec=None, attempt=1)
    assert backend.calls == ["create", "find", "create"] and len(sleeps) == 1

    class Refused(_Backend):
        def create(self, spec, identity):
            self.calls.append("create")
            raise ValueError("400: bad request")

    refused = Refused(0)
    with pytest.raises(ValueError, match="400"):
        _launcher(refused, sleeps)._create(spec=None, attempt=1)
    assert refused.calls == ["create"]
    with pytest.raises(ValueError, match="create_attempts must be >= 1"):
        _launcher(refused, sleeps, create_attempts=0)
