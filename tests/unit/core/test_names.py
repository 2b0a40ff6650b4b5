"""``core.names``: every rule with good and bad values (pure: no server, no DNS)."""

from __future__ import annotations

import re

import pytest

from gemini_tuning.core.names import (
    LOCATION_PATTERN,
    PROJECT_PATTERN,
    RESOURCE_KINDS,
    InvalidName,
    check_base_url,
    validate_location,
    validate_project,
    validate_resource_name,
)

pytestmark = pytest.mark.fast


# ------------------------------------------------------------------------------------------ the error
def test_the_error_names_the_field_the_value_and_the_rule():
    with pytest.raises(InvalidName) as err:
        validate_location("x@attacker.example/", field="params.location")
    assert str(err.value) == ("invalid params.location 'x@attacker.example/': must be a Google Cloud region id "
                              "(lowercase letters, a hyphen, lowercase letters and a number, e.g. us-central1 or "
                              "europe-west4) or 'global'")
    assert (err.value.field, err.value.value) == ("params.location", "x@attacker.example/")
    assert isinstance(err.value, ValueError)


def test_a_long_value_is_shown_truncated():
    with pytest.raises(InvalidName) as err:
        validate_project("x" * 500)
    shown = str(err.value).split(": ", 1)[0].removeprefix("invalid project ")
    assert len(shown) == 80 and shown.startswith("'xxx") and shown.endswith("...")


# ------------------------------------------------------------------------------------------ location
GOOD_LOCATIONS = ["us-central1", "europe-west4", "asia-northeast1", "northamerica-northeast1", "me-central2",
                  "us-east5", "africa-south1", "global"]
BAD_LOCATIONS = ["", "us", "eu", "US-CENTRAL1", "us-central1-a", "us-central1 ", " us-central1", "us_central1",
                 "us-central1.", "us-central1/", "x@attacker.example/", "attacker.example#", "127.0.0.1:80?",
                 "us-central1%2f", "us-central１", "us‐central1", "127。0。0。1", "us-central1\n", "../x", None, 1,
                 "us-central123", "a-b1"]


@pytest.mark.parametrize("value", GOOD_LOCATIONS)
def test_good_locations(value):
    assert validate_location(value) == value and re.fullmatch(LOCATION_PATTERN, value)


@pytest.mark.parametrize("value", BAD_LOCATIONS)
def test_bad_locations(value):
    with pytest.raises(InvalidName, match=r"^invalid location .*: must be a Google Cloud region id"):
        validate_location(value)
    assert not (isinstance(value, str) and re.fullmatch(LOCATION_PATTERN, value))


# ------------------------------------------------------------------------------------------ project
# every project id the tests, emulator and scripts use, Google's edge cases, numbers and domain-scoped ids
GOOD_PROJECTS = ["test-project", "ui-project", "cluster-project", "demo-project", "conn-project", "arg-project",
                 "bench-project", "billing-project", "abcdef", "a" * 30, "my-project-123", "123456789012", "7",
                 "example.com:my-project", "google.com:x-proj1"]
BAD_PROJECTS = ["", "p", "abcde", "a" * 31, "1project", "-project", "project-", "Test-Project", "test_project",
                "test project", "test-project/..", "test-project#", "test-project?x", "p@127.0.0.1", "tëst-project",
                "0123", "example.com:", ":my-project", "example.com:My-Project", "test-project\n", None]


@pytest.mark.parametrize("value", GOOD_PROJECTS)
def test_good_projects(value):
    assert validate_project(value) == value and re.fullmatch(PROJECT_PATTERN, value)


@pytest.mark.parametrize("value", BAD_PROJECTS)
def test_bad_projects(value):
    with pytest.raises(InvalidName, match=r"^invalid project .*: must be a Google Cloud project id"):
        validate_project(value)


# ------------------------------------------------------------------------------------------ resource names
P = "projects/test-project/locations/us-central1"
GOOD_NAMES = [
    ("parent", P), ("parent", "projects/123/locations/global"), ("parent", "projects/p/locations/l"),
    ("model", f"{P}/models/123"), ("model", f"{P}/models/123@1"), ("model", f"{P}/models/m-1@champion"),
    ("model", "projects/example.com:proj-1/locations/us-central1/models/9@2"),
    ("endpoint", f"{P}/endpoints/456"), ("tuning_job", f"{P}/tuningJobs/789"),
    ("batch_job", f"{P}/batchPredictionJobs/1"), ("tuned_model", "tunedModels/gt-kabc-1"),
    ("operation", "tunedModels/m/operations/abc123"), ("base_model", "gemini-2.5-flash-001"),
    ("base_model", "models/gemini-1.5-flash-001-tuning"), ("base_model", "publishers/google/models/gemini-2.5-pro"),
    ("base_model", f"{P}/publishers/google/models/gemini-2.5-flash"),
]
BAD_NAMES = [
    ("model", f"{P}/models/1@"), ("model", f"{P}/models/1@1@2"), ("model", f"{P}/models/@1"),
    ("model", f"{P}/models/1/x"), ("model", f"{P}/models/1#"), ("model", f"{P}/models/1?x"),
    ("model", f"{P}/models/1%2f"), ("model", f"{P}/models/.."), ("model", f"{P}/models/a..b"),
    ("model", f"{P}/models/1 "), ("model", f"{P}/models/１"), ("model", "models/9"), ("model", f"{P}/models/1@1.2"),
    ("model", f"/{P}/models/1"), ("model", f"{P}//models/1"), ("model", f"{P}/models/"), ("model", ""),
    ("endpoint", f"{P}/endpoints/1@2"), ("endpoint", f"{P}/endpoints/-1"), ("tuning_job", f"{P}/tuningJobs/1/"),
    ("tuning_job", "projects/x@127.0.0.1:9/locations/l/tuningJobs/1"), ("tuning_job", f"{P}/models/1"),
    ("tuning_job", "projects/p/locations/l/tuningJobs/1\n"), ("tuned_model", "tunedModels/x/../y"),
    ("tuned_model", "tunedModels/"), ("operation", "tunedModels/x/operations/y:cancel"),
    ("base_model", "//attacker.example/x"), ("base_model", "@attacker.example"), ("base_model", "models/x/y"),
    ("batch_job", f"{P}/batchPredictionJobs/{'1' * 129}"), ("tuning_job", None),
]


@pytest.mark.parametrize("kind, name", GOOD_NAMES)
def test_good_resource_names(kind, name):
    assert validate_resource_name(name, kind) == name


@pytest.mark.parametrize("kind, name", BAD_NAMES)
def test_bad_resource_names(kind, name):
    with pytest.raises(InvalidName) as err:
        validate_resource_name(name, kind)
    assert f"must be {RESOURCE_KINDS[kind][0]} (each id" in str(err.value)


def test_several_kinds_and_a_field_name():
    assert validate_resource_name("tunedModels/x", ("tuned_model", "base_model")) == "tunedModels/x"
    with pytest.raises(InvalidName) as err:
        validate_resource_name("tunedModels/x#", ("tuned_model", "operation"), field="job_name")
    assert str(err.value).startswith("invalid job_name 'tunedModels/x#': must be tunedModels/ID | "
                                     "tunedModels/ID/operations/ID (each id 1-128 ASCII letters")
    with pytest.raises(ValueError, match="unknown resource kind"):
        validate_resource_name("x", "dataset")


# ------------------------------------------------------------------------------------------ base URLs
GOOD_URLS = [
    ("https://aiplatform.googleapis.com", "https://aiplatform.googleapis.com"),
    ("https://us-central1-aiplatform.googleapis.com/", "https://us-central1-aiplatform.googleapis.com"),
    ("https://generativelanguage.googleapis.com", "https://generativelanguage.googleapis.com"),
    ("https://storage.googleapis.com:443", "https://storage.googleapis.com:443"),
    ("HTTPS://AIPlatform.GoogleAPIs.com", "https://aiplatform.googleapis.com"),
    ("http://127.0.0.1:8089", "http://127.0.0.1:8089"), ("http://127.0.0.1:9/", "http://127.0.0.1:9"),
    ("https://127.8.9.10:1", "https://127.8.9.10:1"), ("http://localhost:4443", "http://localhost:4443"),
    ("http://LOCALHOST", "http://localhost"), ("http://[::1]:8080", "http://[::1]:8080"),
    ("http://[0:0:0:0:0:0:0:1]", "http://[0:0:0:0:0:0:0:1]"),
]
BAD_URLS = [
    ("http://aiplatform.googleapis.com", "plain http:// is only for a loopback emulator"),
    ("https://attacker.example", "its host 'attacker.example' is neither a Google API host nor loopback"),
    ("https://googleapis.com", "its host 'googleapis.com' is neither a Google API host nor loopback"),
    ("https://aiplatform.googleapis.com.attacker.example", "is neither a Google API host nor loopback"),
    ("https://xgoogleapis.com", "is neither a Google API host nor loopback"),
    ("https://aiplatform.googleapis.com.", "it has no valid host name"),
    ("https://aiplatform..googleapis.com", "it has no valid host name"),
    ("https://aiplatform.googleapis.com:8443", "a Google API host takes no port but 443"),
    ("https://aiplatform.googleapis.com@attacker.example", "it has user info before the host ('@')"),
    ("http://x@127.0.0.1:9", "it has user info before the host ('@')"),
    ("https://attacker.example#.googleapis.com", "it has a fragment ('#')"),
    ("https://attacker.example?.googleapis.com", "it has a query ('?')"),
    ("https://aiplatform.googleapis.com/v1", "it has a path"),
    ("https://aiplatform.googleapis.com//", "it has a path"),
    ("https://aiplatform%2egoogleapis.com", "it has a percent escape ('%')"),
    ("https://aiplatform。googleapis。com", "non-ASCII"), ("https://aiplatform．googleapis．com", "non-ASCII"),
    ("https://aiplatform｡googleapis｡com", "non-ASCII"), ("http://127。0。0。1:9", "non-ASCII"),
    ("https://aiplatform.googleapis.com\\@attacker.example", "backslash"),
    ("https://aiplatform.googleapis.com ", "whitespace"), ("https://aiplatform.googleapis.com\n", "whitespace"),
    ("http://127.1:9", "its host '127.1' is neither"), ("http://0x7f.0.0.1:9", "is neither"),
    ("http://127.000.000.001:9", "is neither"), ("http://2130706433:9", "is neither"),
    ("http://10.0.0.1:9", "is neither"), ("http://[::ffff:127.0.0.1]:9", "is neither"),
    ("http://[fe80::1]:9", "is neither"), ("http://localhost.:9", "it has no valid host name"),
    ("http://127.0.0.1:99999", "its host or port cannot be parsed"), ("http://127.0.0.1:0", "its port is 0"),
    ("http://127.0.0.1:x", "its host or port cannot be parsed"), ("ftp://127.0.0.1", "its scheme is not"),
    ("127.0.0.1:8080", "its scheme is not"), ("http:/127.0.0.1", "its scheme is not"),
    ("//127.0.0.1", "its scheme is not"), ("http://", "it has no valid host name"), ("", "not a URL string"),
    (None, "not a URL string"),
]


@pytest.mark.parametrize("url, normalized", GOOD_URLS)
def test_good_base_urls(url, normalized):
    assert check_base_url(url) == normalized


@pytest.mark.parametrize("url, reason", BAD_URLS)
def test_bad_base_urls(url, reason):
    with pytest.raises(InvalidName) as err:
        check_base_url(url, field="connection extra api_base_url")
    text = str(err.value)
    assert text.startswith("invalid connection extra api_base_url ") and reason in text
    assert text.endswith("a credentialed request goes only to an https:// Google API host (*.googleapis.com, port "
                         "443) or to a loopback emulator (http:// or https:// on 127.0.0.0/8, localhost or [::1]), "
                         "written scheme://host[:port] with nothing after it but an optional '/'")
