"""The hook (credentials from each kind of connection, the emulator URL from each of its sources, the backend
table), the extra links, the provider info, and the "tuning discontinued" classifier."""

from __future__ import annotations

import json

import pytest

from gemini_tuning.backends import gemini_api as g
from gemini_tuning.backends.errors import TuningApiError, TuningDiscontinuedError
from gemini_tuning.core.tuning import BACKENDS
from gemini_tuning.hooks import EMULATOR_ENV, GeminiApiKeyHook, GeminiTuningHook

pytestmark = pytest.mark.fast

ANON = {"conn_type": "google_cloud_platform", "extra": {"is_anonymous": True, "project": "conn-project"}}


@pytest.fixture
def conns(monkeypatch):
    monkeypatch.delenv(EMULATOR_ENV, raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_ANON", json.dumps(ANON))
    monkeypatch.setenv("AIRFLOW_CONN_ANON_WITH_URL", json.dumps(
        {**ANON, "extra": {**ANON["extra"], "api_base_url": "http://127.0.0.1:1111"}}))
    monkeypatch.setenv("AIRFLOW_CONN_GEMINI_KEY", json.dumps({"conn_type": "gemini_api", "password": "k-password"}))
    monkeypatch.setenv("AIRFLOW_CONN_GEMINI_EXTRA", json.dumps({"conn_type": "gemini_api",
                                                                "extra": {"api_key": "k-extra"}}))
    monkeypatch.setenv("AIRFLOW_CONN_GEMINI_EMPTY", json.dumps({"conn_type": "gemini_api"}))
    return monkeypatch


# ------------------------------------------------------------------------------------------ the emulator URL
def test_emulator_url_from_argument_then_connection_then_environment(conns):
    assert GeminiTuningHook("anon").api_base_url is None                          # none: Google's endpoints
    conns.setenv(EMULATOR_ENV, "http://127.0.0.1:3333")
    assert GeminiTuningHook("anon").api_base_url == "http://127.0.0.1:3333"       # 3. the environment
    assert GeminiTuningHook("anon_with_url").api_base_url == "http://127.0.0.1:1111"   # 2. the connection extra
    assert GeminiTuningHook("anon_with_url", api_base_url="http://127.0.0.1:2222").api_base_url == \
        "http://127.0.0.1:2222"                                                   # 1. the argument


# ------------------------------------------------------------------------------------------ credentials
def test_anonymous_connection_gets_a_token_only_against_an_emulator(conns):
    import google.oauth2.credentials

    with pytest.raises(ValueError, match="anonymous but no api_base_url"):
        GeminiTuningHook("anon").vertex(None, "us-central1")
    backend = GeminiTuningHook("anon", api_base_url="http://127.0.0.1:9").vertex(None, "europe-west4")
    assert isinstance(backend.credentials, google.oauth2.credentials.Credentials)
    assert backend.project == "conn-project" and backend.location == "europe-west4"
    assert backend.base_url == "http://127.0.0.1:9"


def test_project_argument_wins_over_the_connection(conns):
    backend = GeminiTuningHook("anon", api_base_url="http://127.0.0.1:9").vertex("arg-project", "us-central1")
    assert backend.project == "arg-project"


def test_gemini_api_key_from_password_or_extra_sent_as_header(conns):
    for conn, key in (("gemini_key", "k-password"), ("gemini_extra", "k-extra")):
        backend = GeminiTuningHook("anon", gemini_api_conn_id=conn).gemini_api()
        assert backend._headers() == {"x-goog-api-key": key}
        assert key not in repr(backend)
    with pytest.raises(ValueError, match="has no API key"):
        GeminiTuningHook("anon", gemini_api_conn_id="gemini_empty").gemini_api()


def test_gemini_api_without_key_uses_the_oauth_connection_and_its_project(conns):
    backend = GeminiTuningHook("anon", api_base_url="http://127.0.0.1:9").gemini_api()
    assert backend.api_key is None and backend.quota_project == "conn-project"
    headers = backend._headers()
    assert headers["Authorization"].startswith("Bearer ") and headers["x-goog-user-project"] == "conn-project"


def test_api_key_connection_type_hides_what_it_does_not_use():
    ui = GeminiApiKeyHook.get_ui_field_behaviour()
    assert ui["relabeling"] == {"password": "API key"} and "host" in ui["hidden_fields"]
    assert GeminiApiKeyHook.conn_type == "gemini_api"


def test_one_builder_per_backend(conns):
    hook = GeminiTuningHook("anon", api_base_url="http://127.0.0.1:9", gemini_api_conn_id="gemini_key")
    assert [hook.backend(kind).kind for kind in BACKENDS] == list(BACKENDS)
    with pytest.raises(ValueError, match="unknown backend"):
        hook.backend("openai")


def test_the_gemini_api_has_no_location_and_the_dispatch_passes_none(conns, monkeypatch):
    """Vertex gets the location; the Gemini API builder takes none (the API is global), so ``backend`` passes it
    the project only, whatever location it was given."""
    import inspect

    assert "location" not in inspect.signature(GeminiTuningHook.gemini_api).parameters
    hook = GeminiTuningHook("anon", api_base_url="http://127.0.0.1:9")
    seen = []
    monkeypatch.setattr(GeminiTuningHook, "gemini_api", lambda self, *a, **k: seen.append((a, k)) or "api")
    assert hook.backend("gemini_api", project_id="arg-project", location="europe-west4") == "api"
    assert seen == [(("arg-project",), {})]
    assert hook.backend("vertex", project_id="arg-project", location="europe-west4").location == "europe-west4"


# ------------------------------------------------------------------------------------------ links
def test_report_link_opens_the_report_through_the_api_server(monkeypatch):
    from types import SimpleNamespace

    from airflow.sdk.execution_time.xcom import XCom

    from gemini_tuning import links

    values = [{"report_uri": "gs://b/runs/r/report/index.html", "url": "https://storage.cloud.google.com/b/x"},
              None, {"decision": "promote"}]
    monkeypatch.setattr(XCom, "get_value", staticmethod(lambda *, key, ti_key: values.pop(0)))
    key = SimpleNamespace(dag_id="gemini_tuning_pipeline", run_id="manual__2026-12-01T10:00:00+00:00")
    link = links.ReportLink()
    assert link.get_link(None, ti_key=key) == \
        "/gemini-tuning/report/gemini_tuning_pipeline/manual__2026-12-01T10%3A00%3A00%2B00%3A00"
    assert link.get_link(None, ti_key=key) == "" and link.get_link(None, ti_key=key) == ""


@pytest.mark.parametrize("link_cls, key", [("TuningJobLink", "gemini_tuning_job")])
def test_links_read_the_url_of_their_xcom(monkeypatch, link_cls, key):
    from airflow.sdk.execution_time.xcom import XCom

    from gemini_tuning import links

    seen = {}

    def get_value(*, key, ti_key):
        seen["key"] = key
        return values.pop(0)

    values = [{"url": "https://console.example/job/1", "name": "j"}, None, "not a dict"]
    monkeypatch.setattr(XCom, "get_value", staticmethod(get_value))
    link = getattr(links, link_cls)()
    assert link.get_link(None, ti_key="ti") == "https://console.example/job/1"
    assert seen["key"] == key
    assert link.get_link(None, ti_key="ti") == "" and link.get_link(None, ti_key="ti") == ""


def test_plugin_and_provider_info_register_both_links():
    from airflow.sdk.module_loading import import_string

    from gemini_tuning.plugin import GeminiTuningPlugin
    from gemini_tuning.provider_info import get_provider_info

    names = {type(link).__name__ for link in GeminiTuningPlugin.operator_extra_links}
    assert names == {"TuningJobLink", "ReportLink"}
    info = get_provider_info()
    assert {import_string(p).__name__ for p in info["extra-links"]} == names
    hook = import_string(info["connection-types"][0]["hook-class-name"])
    assert hook.conn_type == info["connection-types"][0]["connection-type"]


# ------------------------------------------------------------------------------------------ discontinued
def create_error(status: int, message: str) -> TuningApiError:
    """What the Gemini API backend makes of the create call's error answer ``status`` with ``message``."""
    with pytest.raises(TuningApiError) as info:
        g.raise_for(status, json.dumps({"error": {"message": message}}), {})
    return g.create_error(info.value)


@pytest.mark.parametrize("message", [
    "Model tuning is no longer supported in the Gemini API. Use Vertex AI.",       # the emulator's refusal
    "Model tuning is no longer supported. Use Vertex AI.",
    "Tuning is no longer available through the Gemini API; please migrate to Vertex AI.",
    "Fine-tuning via the Gemini API has been discontinued.",
    "The tunedModels API has been turned down; tuning is discontinued",
])
def test_discontinued_messages_match(message):
    assert g.is_tuning_discontinued(message)
    with pytest.raises(TuningDiscontinuedError, match="backend='vertex'"):
        raise create_error(400, message)


def test_todays_404_for_create_tuned_model_points_to_vertex():
    """Google's answer today (reference §6; the emulator's ``gemini_api_tuning_not_found``): a 404 that the base
    model "is not supported for createTunedModel". Not a "discontinued" text, but it means the same."""
    message = ("models/gemini-1.5-flash-001-tuning is not found for API version v1beta, or is not supported for "
               "createTunedModel. Call ListModels to see the list of available models and their supported methods.")
    assert not g.is_tuning_discontinued(message)
    with pytest.raises(TuningDiscontinuedError, match=r"createTunedModel\. .*use backend='vertex'"):
        raise create_error(404, message)
    with pytest.raises(TuningApiError) as info:           # the same text on a 400 stays the service's own error
        raise create_error(400, message)
    assert not isinstance(info.value, TuningDiscontinuedError)


@pytest.mark.parametrize("message", [
    "Base model models/gemini-2.0-pro is not supported for tuning.",                # an unsupported base model
    "learning_rate is not supported together with learning_rate_multiplier.",
    "The model models/gemini-1.0-pro is deprecated.",
    "Please use Vertex AI for enterprise features.",
    "API key not valid. Please pass a valid API key.",
    "Request payload size exceeds the limit: 4194304 bytes.",
    "tuning_task.training_data is required",
    "",
])
def test_ordinary_errors_are_not_taken_for_discontinued(message):
    assert not g.is_tuning_discontinued(message)
    with pytest.raises(TuningApiError) as info:
        raise create_error(400, message)
    assert not isinstance(info.value, TuningDiscontinuedError)
