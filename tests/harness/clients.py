"""The project, location and bucket the tests use on the emulator, and clients of it (the official SDKs, pointed at
the emulator's URL with dummy credentials)."""

from __future__ import annotations

PROJECT, LOCATION, BUCKET = "test-project", "us-central1", "gemini-tuning-test"

#: Fast jobs for tests: pending 120 s × 0.004 = 0.5 s, each step 15 s × 0.004 = 0.06 s.
TEST_TIME_SCALE = 0.004


def genai_vertex_client(url: str, *, attempts: int | None = None):
    import google.oauth2.credentials
    from google import genai
    from google.genai import types

    http = types.HttpOptions(base_url=url)
    if attempts:
        http = types.HttpOptions(base_url=url, retry_options=types.HttpRetryOptions(
            attempts=attempts, initial_delay=0.05, max_delay=0.2))
    return genai.Client(vertexai=True, project=PROJECT, location=LOCATION,
                        credentials=google.oauth2.credentials.Credentials(token="test-token"), http_options=http)


def gapic_kwargs(url: str) -> dict:
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials

    return dict(credentials=AnonymousCredentials(), transport="rest", client_options=ClientOptions(api_endpoint=url))
