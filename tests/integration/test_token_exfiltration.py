"""No input sends a credential elsewhere: the project's real backends, the REST transport and the hook, given a
location, project, resource name or base URL shaped to move the request to another host, refuse with
``core.names.InvalidName`` (the message users see is asserted) before any request exists.

Two local HTTP servers record every connection and request: the *attacker* (where an injection would send the
token) and the *emulator* (the configured loopback base URL). A connection counts even when it is not HTTP: an
``https://`` injection against the plain-HTTP attacker shows up as a TLS handshake (on the internet, the attacker's
own certificate would make that handshake succeed and the bearer token follow). Loopback only, no external network.
"""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gemini_tuning.backends.gemini_api import GeminiApiTuningBackend
from gemini_tuning.backends.rest import Request, RestClient, single
from gemini_tuning.backends.retry import RetryPolicy
from gemini_tuning.backends.vertex import VertexTuningBackend
from gemini_tuning.backends.vertex_batch import VertexBatchPredictionBackend
from gemini_tuning.backends.vertex_evaluation import VertexEvaluationBackend
from gemini_tuning.backends.vertex_registry import VertexRegistry
from gemini_tuning.core.generation import GenerationSettings
from gemini_tuning.core.names import InvalidName
from gemini_tuning.hooks import EMULATOR_ENV, GeminiTuningHook

pytestmark = pytest.mark.fast

PROJECT, LOCATION = "test-project", "us-central1"
TOKEN = "secret-token"
ONE = RetryPolicy(attempts=1, initial_delay=0.01, max_delay=0.01, total_seconds=5)
LOCATION_RULE = ("must be a Google Cloud region id (lowercase letters, a hyphen, lowercase letters and a number, "
                 "e.g. us-central1 or europe-west4) or 'global'")
PROJECT_RULE = ("must be a Google Cloud project id (6 to 30 characters: lowercase letters, digits and hyphens, "
                "starting with a letter and not ending with a hyphen; optionally 'domain:' first) or a project "
                "number (digits)")
ID_RULE = ("each id 1-128 ASCII letters, digits, '-', '_' or '.' starting with a letter or digit, no '..'; '@' only "
           "before a model version or alias; no '/', '#', '?', '%', whitespace or other characters inside a part")
URL_RULE = ("a credentialed request goes only to an https:// Google API host (*.googleapis.com, port 443) or to "
            "a loopback emulator (http:// or https:// on 127.0.0.0/8, localhost or [::1]), written "
            "scheme://host[:port] with nothing after it but an optional '/'")


# ------------------------------------------------------------------------------------------ the recording servers
class Recorder(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        self.connections: list[str] = []
        self.requests: list[dict] = []
        super().__init__(("127.0.0.1", 0), _Handler)
        self.port = self.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def clear(self) -> None:
        self.connections.clear()
        self.requests.clear()

    def seen(self) -> list:
        return [*self.connections, *self.requests]


class _Handler(BaseHTTPRequestHandler):
    def handle(self):
        self.server.connections.append(f"connection from {self.client_address[0]}")
        super().handle()

    def _any(self):
        self.server.requests.append({"method": self.command, "path": self.path,
                                     "authorization": self.headers.get("Authorization"),
                                     "api_key": self.headers.get("x-goog-api-key")})
        body = b"{}"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_DELETE = do_PATCH = _any

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def servers():
    attacker, emulator = Recorder(), Recorder()
    yield attacker, emulator
    for srv in (attacker, emulator):
        srv.shutdown()
        srv.server_close()


@pytest.fixture
def attacker(servers):
    servers[0].clear()
    servers[1].clear()
    return servers[0]


@pytest.fixture
def emu(servers, attacker):
    return servers[1]


def creds():
    import google.oauth2.credentials

    return google.oauth2.credentials.Credentials(token=TOKEN)


def refused(action, message: str, *servers: Recorder) -> None:
    """``action()`` must raise InvalidName with exactly ``message``, and no server may have seen anything."""
    try:
        action()
    except Exception as exc:  # noqa: BLE001 - judged below
        err = exc
    else:
        err = None
    for srv in servers:
        assert srv.seen() == [], f"{srv.url} received {srv.seen()} (error: {err!r})"
    assert err is not None, "expected a refusal, the call went through"
    assert isinstance(err, InvalidName), f"expected InvalidName, got {type(err).__name__}: {err}"
    assert str(err) == message


def job(location=LOCATION, project=PROJECT) -> str:
    return f"projects/{project}/locations/{location}/tuningJobs/123"


# ------------------------------------------------------------------------------------------ location
LOCATIONS = ["x@{a}/", "{a}#", "{a}?", "{a}/", "{a}%2f", "x%40{a}/", "127。0。0。1:{p}/", "127．0．0．1:{p}#",
             "127｡0｡0｡1:{p}?", "x@attacker.example/", "attacker.example#", "us-central1/../../x", "US-CENTRAL1",
             "us-central1 ", "", "us-central1.attacker.example"]


def _location_calls(loc: str) -> dict:
    """Each way a location reaches a host, with Google's endpoints (no base URL): the REST poll, google-genai, the
    autorater, batch prediction, the Model Registry (GAPIC) and the hook."""
    conn = dict(project=PROJECT, location=loc, credentials=creds(), retry_policy=ONE)
    return {
        "vertex rest poll": lambda: VertexTuningBackend(**conn).get(job(loc)),
        "vertex google-genai": lambda: list(VertexTuningBackend(**conn).client.tunings.list()),
        "autorater": lambda: asyncio.run(VertexEvaluationBackend(**conn).apointwise("t", {}, "m")),
        "batch prediction": lambda: VertexBatchPredictionBackend(**conn).get(
            f"projects/{PROJECT}/locations/{loc}/batchPredictionJobs/1"),
        "model registry": lambda: VertexRegistry(PROJECT, loc, creds(), retry_policy=ONE).get_model(
            f"projects/{PROJECT}/locations/{loc}/models/1"),
    }


@pytest.mark.parametrize("shape", LOCATIONS)
@pytest.mark.parametrize("call", list(_location_calls("x")))
def test_a_location_never_becomes_a_host(attacker, shape, call):
    loc = shape.format(a=f"127.0.0.1:{attacker.port}", p=attacker.port)
    refused(_location_calls(loc)[call], f"invalid location {loc!r}: {LOCATION_RULE}", attacker)


@pytest.fixture
def conns(monkeypatch):
    monkeypatch.delenv(EMULATOR_ENV, raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_TOKEN", json.dumps({"conn_type": "google_cloud_platform",
                                                         "extra": {"project": PROJECT}}))
    return monkeypatch


def _hook(conn_id="token", **kwargs) -> tuple[GeminiTuningHook, list]:
    """A hook whose credentials carry TOKEN; the list records each time they were fetched."""
    hook, fetched = GeminiTuningHook(conn_id, **kwargs), []
    hook.get_credentials = lambda: fetched.append(1) or creds()
    hook.get_credentials_and_project_id = lambda: (fetched.append(1) or creds(), PROJECT)
    return hook, fetched


@pytest.mark.parametrize("shape", ["x@{a}/", "{a}#", "127。0。0。1:{p}/", "attacker.example#"])
@pytest.mark.parametrize("build", ["backend", "vertex_batch", "vertex_evaluation", "registry"])
def test_the_hook_checks_the_location_before_it_touches_credentials(attacker, conns, shape, build):
    loc = shape.format(a=f"127.0.0.1:{attacker.port}", p=attacker.port)
    hook, fetched = _hook()
    call = {"backend": lambda: hook.backend("vertex", project_id=PROJECT, location=loc).get(job(loc)),
            "vertex_batch": lambda: hook.vertex_batch(PROJECT, loc).get(
                f"projects/{PROJECT}/locations/{loc}/batchPredictionJobs/1"),
            "vertex_evaluation": lambda: asyncio.run(hook.vertex_evaluation(PROJECT, loc).apointwise("t", {}, "m")),
            "registry": lambda: hook.registry(PROJECT, loc).get_model(
                f"projects/{PROJECT}/locations/{loc}/models/1")}[build]
    refused(call, f"invalid location {loc!r}: {LOCATION_RULE}", attacker)
    assert fetched == [], "credentials were fetched before the location was checked"


# ------------------------------------------------------------------------------------------ project
PROJECTS = ["p@{a}", "../..", "test-project/../../x", "test-project#", "test-project?alt=x", "Test-Project",
            "tëst-project", "a" * 31, "test-project-", "", "test project"]


@pytest.mark.parametrize("shape", PROJECTS)
def test_a_project_never_reaches_a_request(attacker, emu, shape):
    project = shape.format(a=f"127.0.0.1:{attacker.port}")
    message = f"invalid project {project!r}: {PROJECT_RULE}"
    conn = dict(project=project, location=LOCATION, credentials=creds(), base_url=emu.url, retry_policy=ONE)
    refused(lambda: VertexTuningBackend(**conn).get(job(project=PROJECT)), message, attacker, emu)
    refused(lambda: asyncio.run(VertexEvaluationBackend(**conn).apointwise("t", {}, "m")), message, attacker, emu)
    refused(lambda: VertexRegistry(project, LOCATION, creds(), base_url=emu.url).find_models({}), message,
            attacker, emu)


def test_the_hook_checks_the_project_before_it_touches_credentials(attacker, emu, conns):
    hook, fetched = _hook(api_base_url=emu.url)
    bad = f"p@127.0.0.1:{attacker.port}"
    refused(lambda: hook.vertex(bad, LOCATION), f"invalid project_id {bad!r}: {PROJECT_RULE}", attacker, emu)
    assert fetched == []


# ------------------------------------------------------------------------------------------ resource names
def _bad_names(a: str) -> list[str]:
    good = job()
    return [f"@{a}/x", f"//{a}/x", f"{good}#", f"{good}?alt=media", f"{good}/../../../../x", f"{good[:-3]}%2e%2e",
            f"{good} ", f"{good[:-3]}１２３", f"{good}@2", f"{good}/x", good.replace("tuningJobs", "tuning Jobs"),
            f"projects/{PROJECT}/locations/{LOCATION}/tuningJobs/", "", f"{good}\n"]


def test_tuning_job_names_are_checked_before_the_request(attacker, emu):
    backend = VertexTuningBackend(project=PROJECT, location=LOCATION, credentials=creds(), base_url=emu.url,
                                  retry_policy=ONE)
    for name in _bad_names(f"127.0.0.1:{attacker.port}"):
        message = (f"invalid tuning job name {name!r}: must be projects/PROJECT/locations/LOCATION/tuningJobs/ID "
                   f"({ID_RULE})")
        refused(lambda name=name: backend.get(name), message, attacker, emu)
        refused(lambda name=name: backend.cancel(name), message, attacker, emu)
        refused(lambda name=name: asyncio.run(backend.aget(name)), message, attacker, emu)
        refused(lambda name=name: asyncio.run(backend.acancel(name)), message, attacker, emu)


def test_other_names_are_checked_before_the_request(attacker, emu):
    a = f"127.0.0.1:{attacker.port}"
    batch = VertexBatchPredictionBackend(project=PROJECT, location=LOCATION, credentials=creds(), base_url=emu.url,
                                         retry_policy=ONE)
    name = f"projects/p/locations/l/batchPredictionJobs/@{a}/x"
    refused(lambda: batch.get(name), f"invalid batch prediction job name {name!r}: must be projects/PROJECT/"
                                     f"locations/LOCATION/batchPredictionJobs/ID ({ID_RULE})", attacker, emu)
    registry = VertexRegistry(PROJECT, LOCATION, creds(), base_url=emu.url, retry_policy=ONE)
    model = f"projects/{PROJECT}/locations/{LOCATION}/models/1@2#x"
    refused(lambda: registry.get_model(model),
            f"not a Vertex AI model name: {model!r} (expected projects/P/locations/L/models/M[@version]; must be "
            f"projects/PROJECT/locations/LOCATION/models/ID[@VERSION_OR_ALIAS] ({ID_RULE}))", attacker, emu)
    endpoint = f"projects/{PROJECT}/locations/{LOCATION}/endpoints/1?x"
    refused(lambda: registry.delete_tuned_model(f"projects/{PROJECT}/locations/{LOCATION}/models/1@1", endpoint),
            f"invalid Vertex AI endpoint name {endpoint!r}: must be projects/PROJECT/locations/LOCATION/endpoints/ID "
            f"({ID_RULE})", attacker, emu)
    api = GeminiApiTuningBackend(base_url=emu.url, credentials=creds(), retry_policy=ONE)
    for bad in (f"tunedModels/x/../../{a}", "tunedModels/x#", "tunedModels/x/operations/y?z", "tunedModels/%2e"):
        message = (f"invalid Gemini API tuned model name or operation name {bad!r}: must be tunedModels/ID | "
                   f"tunedModels/ID/operations/ID ({ID_RULE})")
        refused(lambda bad=bad: api.get(bad), message, attacker, emu)
        refused(lambda bad=bad: api.cancel(bad), message, attacker, emu)
    refused(lambda: api.delete("tunedModels/x?y"), "invalid Gemini API tuned model name 'tunedModels/x?y': must be "
                                                   f"tunedModels/ID ({ID_RULE})", attacker, emu)
    settings = GenerationSettings()
    refused(lambda: asyncio.run(api.agenerate(f"@{a}/models/x", "hi", settings)),
            f"invalid generation model {f'@{a}/models/x'!r}: must be tunedModels/ID | a base model: ID, models/ID, "
            "publishers/google/models/ID or projects/PROJECT/locations/LOCATION/publishers/google/models/ID "
            f"({ID_RULE})", attacker, emu)


# ------------------------------------------------------------------------------------------ base URLs
def _leaking_urls(a: str, p: int) -> list[tuple[str, str]]:
    """Base URLs that reach the attacker today, and the reason the refusal gives."""
    return [(f"https://aiplatform.googleapis.com@{a}", "it has user info before the host ('@')"),
            (f"http://aiplatform.googleapis.com@{a}/", "it has user info before the host ('@')"),
            (f"http://x:y@{a}", "it has user info before the host ('@')"),
            (f"http://127。0。0。1:{p}", "it has a non-ASCII, whitespace, control, backslash or other character "
                                       "not allowed here"),
            (f"http://{a}\\@127.0.0.1:9/", "it has a non-ASCII, whitespace, control, backslash or other "
                                             "character not allowed here"),
            (f"http://{a}/v1beta1/", "it has a path"),
            (f"http://{a}/#", "it has a fragment ('#')"),
            (f"http://{a}?", "it has a query ('?')")]


def _url_calls(url: str) -> dict:
    return {
        "vertex": lambda: VertexTuningBackend(project=PROJECT, location=LOCATION, credentials=creds(),
                                              base_url=url, retry_policy=ONE).get(job()),
        "gemini api (oauth)": lambda: GeminiApiTuningBackend(base_url=url, credentials=creds(),
                                                             retry_policy=ONE).get("tunedModels/x"),
        "gemini api (key)": lambda: GeminiApiTuningBackend(base_url=url, api_key="secret-key",
                                                           retry_policy=ONE).get("tunedModels/x"),
        "registry": lambda: VertexRegistry(PROJECT, LOCATION, creds(), base_url=url, retry_policy=ONE).get_model(
            f"projects/{PROJECT}/locations/{LOCATION}/models/1"),
        "rest client": lambda: RestClient(url, headers=lambda: {"Authorization": f"Bearer {TOKEN}"},
                                          raise_for=lambda *a: None).send(Request("GET", "/v1/x")),
    }


@pytest.mark.parametrize("case", range(8))
@pytest.mark.parametrize("call", list(_url_calls("x")))
def test_a_base_url_that_leaves_for_another_host_is_refused(attacker, case, call):
    url, reason = _leaking_urls(f"127.0.0.1:{attacker.port}", attacker.port)[case]
    field = "base_url" if call == "rest client" else "api_base_url"
    refused(_url_calls(url)[call], f"invalid {field} {url!r}: {reason}; {URL_RULE}", attacker)


REFUSED_HOSTS = [
    ("http://aiplatform.googleapis.com", "plain http:// is only for a loopback emulator"),
    ("http://attacker.example:80", "its host 'attacker.example' is neither a Google API host nor loopback"),
    ("https://attacker.example", "its host 'attacker.example' is neither a Google API host nor loopback"),
    ("https://googleapis.com.attacker.example", "its host 'googleapis.com.attacker.example' is neither a Google "
                                                "API host nor loopback"),
    ("https://evil-googleapis.com", "its host 'evil-googleapis.com' is neither a Google API host nor loopback"),
    ("https://aiplatform.googleapis.com.", "it has no valid host name"),
    ("https://aiplatform.googleapis.com:8443", "a Google API host takes no port but 443"),
    ("https://10.0.0.7", "its host '10.0.0.7' is neither a Google API host nor loopback"),
    ("https://127.1", "its host '127.1' is neither a Google API host nor loopback"),
    ("ftp://127.0.0.1", "its scheme is not http:// or https://"),
    ("127.0.0.1:8080", "its scheme is not http:// or https://"),
]


@pytest.mark.parametrize("url, reason", REFUSED_HOSTS)
@pytest.mark.parametrize("call", list(_url_calls("x")))
def test_plain_http_and_hosts_that_are_not_google_or_loopback_are_refused(attacker, url, reason, call):
    """Constructing the client already refuses (these are never sent: no external network in tests)."""
    field = "base_url" if call == "rest client" else "api_base_url"
    build = {"vertex": lambda: VertexTuningBackend(project=PROJECT, location=LOCATION, credentials=creds(),
                                                   base_url=url),
             "gemini api (oauth)": lambda: GeminiApiTuningBackend(base_url=url, credentials=creds()),
             "gemini api (key)": lambda: GeminiApiTuningBackend(base_url=url, api_key="secret-key"),
             "registry": lambda: VertexRegistry(PROJECT, LOCATION, creds(), base_url=url),
             "rest client": lambda: RestClient(url, headers=dict, raise_for=lambda *a: None)}[call]
    refused(build, f"invalid {field} {url!r}: {reason}; {URL_RULE}", attacker)


def test_the_hook_checks_each_source_of_its_base_url(attacker, conns):
    evil = f"https://aiplatform.googleapis.com@127.0.0.1:{attacker.port}"
    reason = "it has user info before the host ('@')"
    conns.setenv("AIRFLOW_CONN_EVIL", json.dumps({"conn_type": "google_cloud_platform",
                                                  "extra": {"is_anonymous": True, "project": PROJECT,
                                                            "api_base_url": evil}}))
    hook, fetched = _hook("evil")
    refused(lambda: hook.vertex(None, LOCATION).get(job()),
            f"invalid api_base_url (extra of connection 'evil') {evil!r}: {reason}; {URL_RULE}", attacker)
    hook, fetched = _hook(api_base_url=evil)
    refused(lambda: hook.gemini_api().get("tunedModels/x"),
            f"invalid api_base_url {evil!r}: {reason}; {URL_RULE}", attacker)
    conns.setenv(EMULATOR_ENV, evil)
    hook, fetched = _hook()
    refused(lambda: hook.registry(None, LOCATION).get_model(f"projects/{PROJECT}/locations/{LOCATION}/models/1"),
            f"invalid ${EMULATOR_ENV} {evil!r}: {reason}; {URL_RULE}", attacker)
    assert fetched == []


def test_storage_emulator_host_is_checked_too(attacker, emu, monkeypatch):
    evil = f"http://storage.googleapis.com@127.0.0.1:{attacker.port}"
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", evil)
    refused(lambda: VertexTuningBackend(project=PROJECT, location=LOCATION, credentials=creds(), base_url=emu.url),
            f"invalid STORAGE_EMULATOR_HOST {evil!r}: it has user info before the host ('@'); {URL_RULE}",
            attacker, emu)


# ------------------------------------------------------------------------------------------ the transport guard
@pytest.mark.parametrize("path", ["@{a}/x", "{a}/x", "//{a}/x", "/v1/x#frag", "/v1/x?alt=media", "/v1/../x",
                                  "/v1/%2e%2e/x", "/v1/x y", "/v1/\\x", "/v1/é", ""])
def test_the_transport_never_lets_a_path_change_the_host(attacker, emu, path):
    path = path.format(a=f"127.0.0.1:{attacker.port}")
    client = RestClient(emu.url, headers=lambda: {"Authorization": f"Bearer {TOKEN}"}, raise_for=lambda *a: None)
    message = (f"invalid request path {path!r}: must start with one '/' and hold only ASCII letters, digits and "
               "-._~:@!$&'()*+,;=/ or %XX escapes (no '?', '#', '..' or '.' segment, '//', %2e or whitespace): a "
               f"request may not change the host of {emu.url}")
    refused(lambda: client.send(Request("GET", path)), message, attacker, emu)
    refused(lambda: asyncio.run(client.arun(single(Request("GET", path)))), message, attacker, emu)


def test_google_genai_is_always_given_the_checked_base_url(attacker, monkeypatch):
    """google-genai reads $GOOGLE_VERTEX_BASE_URL when it is given no base URL: the backend always gives one."""
    monkeypatch.setenv("GOOGLE_VERTEX_BASE_URL", f"https://aiplatform.googleapis.com@127.0.0.1:{attacker.port}")
    backend = VertexTuningBackend(project=PROJECT, location=LOCATION, credentials=creds())
    assert backend.client._api_client._http_options.base_url.rstrip("/") == \
        "https://us-central1-aiplatform.googleapis.com"
    assert attacker.seen() == []


def test_a_loopback_emulator_gets_the_token(attacker, emu):
    """The recorder works and loopback stays allowed: the same token reaches the configured emulator."""
    backend = GeminiApiTuningBackend(base_url=emu.url + "/", credentials=creds(), retry_policy=ONE)
    assert backend.base_url == emu.url
    backend.rest.send(Request("GET", "/v1/tunedModels/x/operations/y"))
    assert [r["authorization"] for r in emu.requests] == [f"Bearer {TOKEN}"] and attacker.seen() == []
