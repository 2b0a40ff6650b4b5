"""The one Airflow hook: credentials from the Google connection, the base URL, and every backend built from them."""

from __future__ import annotations

import os
from collections.abc import Sequence

from airflow.providers.google.common.hooks.base_google import GoogleBaseHook
from airflow.sdk import BaseHook

from .backends.gemini_api import TUNING_SCOPE, GeminiApiTuningBackend
from .backends.retry import RetryPolicy
from .backends.vertex import VertexTuningBackend
from .core.names import check_base_url, validate_location, validate_project
from .core.tuning import BACKENDS

EMULATOR_ENV = "GEMINI_TUNING_EMULATOR_URL"


class GeminiApiKeyHook(BaseHook):
    """The ``gemini_api`` connection type: a Gemini API key in the password field (or the extra ``api_key``).

    :param gemini_api_conn_id: the connection.
    """

    conn_name_attr = "gemini_api_conn_id"
    default_conn_name = "gemini_api_default"
    conn_type = "gemini_api"
    hook_name = "Gemini API key"

    def __init__(self, gemini_api_conn_id: str = default_conn_name, **kwargs):
        super().__init__(**kwargs)
        self.gemini_api_conn_id = gemini_api_conn_id

    @classmethod
    def get_ui_field_behaviour(cls) -> dict:
        return {"hidden_fields": ["schema", "login", "port", "host", "extra"],
                "relabeling": {"password": "API key"}}

    def api_key(self) -> str:
        conn = self.get_connection(self.gemini_api_conn_id)
        key = conn.password or conn.extra_dejson.get("api_key")
        if not key:
            raise ValueError(f"connection {self.gemini_api_conn_id!r} has no API key (password or extra api_key)")
        return key

    def get_conn(self) -> str:
        return self.api_key()


class GeminiTuningHook(GoogleBaseHook):
    """Builds the tuning backends (``core.tuning.BACKENDS``), the Vertex registry and batch backends, and a GCS
    client from one Google connection.

    :param gcp_conn_id: the Google Cloud connection (key file, ADC, or anonymous for the emulator).
    :param impersonation_chain: a service account (or chain) to impersonate.
    :param api_base_url: another host for every Vertex AI / Gemini API call (the emulator). When None, the
        connection extra ``api_base_url``, then ``$GEMINI_TUNING_EMULATOR_URL``; all unset means Google's endpoints.
        Whichever is used must be an ``https://`` Google host or a loopback emulator (``core.names.check_base_url``;
        else ``InvalidName``, before any credential is fetched). GCS follows ``$STORAGE_EMULATOR_HOST``
        (google-cloud-storage's own variable), checked by the same rule.
    :param gemini_api_conn_id: a connection whose password (or extra ``api_key``) is a Gemini API key; without it
        the Gemini API is called with the Google connection's OAuth credentials (``generative-language.tuning``).
    :param retry_policy: retries of idempotent calls (``backends.retry.RetryPolicy``).
    """

    conn_name_attr = "gcp_conn_id"
    default_conn_name = "google_cloud_default"
    hook_name = "Gemini tuning"

    def __init__(self, gcp_conn_id: str = default_conn_name, impersonation_chain: str | Sequence[str] | None = None,
                 *, api_base_url: str | None = None, gemini_api_conn_id: str | None = None,
                 retry_policy: RetryPolicy | None = None, **kwargs):
        super().__init__(gcp_conn_id=gcp_conn_id, impersonation_chain=impersonation_chain, **kwargs)
        self.gemini_api_conn_id = gemini_api_conn_id
        self._api_base_url = api_base_url
        self.retry_policy = retry_policy
        self._storage = None

    @property
    def api_base_url(self) -> str | None:
        """The checked base URL (``scheme://host[:port]``) from the first source that sets one, or None."""
        extra = f"api_base_url (extra of connection {self.gcp_conn_id!r})"
        for field, value in (("api_base_url", self._api_base_url), (extra, self.extras.get("api_base_url")),
                             (f"${EMULATOR_ENV}", os.environ.get(EMULATOR_ENV))):
            if value:
                return check_base_url(value, field)
        return None

    @property
    def scopes(self) -> Sequence[str]:
        return [*super().scopes, TUNING_SCOPE]

    def _token_credentials(self):
        """google-genai refreshes credentials and refuses AnonymousCredentials; an anonymous connection is only
        meaningful against the emulator, which accepts any bearer token."""
        from google.auth.credentials import AnonymousCredentials

        creds = self.get_credentials()
        if isinstance(creds, AnonymousCredentials):
            if not self.api_base_url:
                raise ValueError(f"connection {self.gcp_conn_id!r} is anonymous but no api_base_url/emulator is "
                                 "set: real Google services need credentials")
            import google.oauth2.credentials

            return google.oauth2.credentials.Credentials(token="anonymous")
        return creds

    def resolve_project(self, project_id: str | None) -> str:
        """``project_id``, else the connection's project; checked (``core.names.validate_project``)."""
        if project_id:
            return validate_project(project_id, "project_id")
        if not self.project_id:
            raise ValueError(f"no project: pass project_id or set it on connection {self.gcp_conn_id!r}")
        return validate_project(self.project_id, f"project of connection {self.gcp_conn_id!r}")

    def _vertex_connection(self, project_id: str | None, location: str) -> dict:
        """Location, base URL and project are checked before the credentials are touched (a project taken from the
        connection is read through its credentials provider, so it comes last)."""
        location, base_url = validate_location(location), self.api_base_url
        project = self.resolve_project(project_id)
        return {"project": project, "location": location, "credentials": self._token_credentials(),
                "base_url": base_url, "retry_policy": self.retry_policy}

    # ------------------------------------------------------------------------------------------ tuning backends
    def vertex(self, project_id: str | None, location: str) -> VertexTuningBackend:
        """Vertex AI supervised tuning in ``project_id`` (None: the connection's project) and ``location``."""
        return VertexTuningBackend(**self._vertex_connection(project_id, location))

    def gemini_api(self, project_id: str | None = None) -> GeminiApiTuningBackend:
        """Gemini API ``tunedModels``. The Gemini API is global: it has no location. ``project_id`` (None: the
        connection's project) is only the quota project of OAuth calls; an API key carries its own."""
        base_url = self.api_base_url                     # checked before any key or credential is read
        if self.gemini_api_conn_id:
            key = GeminiApiKeyHook(self.gemini_api_conn_id).api_key()
            return GeminiApiTuningBackend(base_url=base_url, api_key=key, retry_policy=self.retry_policy,
                                          storage=self.storage)
        return GeminiApiTuningBackend(base_url=base_url, credentials=self._token_credentials(),
                                      quota_project=project_id or self.project_id, retry_policy=self.retry_policy,
                                      storage=self.storage)

    def backend(self, kind: str, *, project_id: str | None = None, location: str = "us-central1"):
        """The tuning backend named ``kind`` (one of ``core.tuning.BACKENDS``); ``location`` is Vertex's only (the
        Gemini API is global)."""
        if kind == "vertex":
            return self.vertex(project_id, location)
        if kind == "gemini_api":
            return self.gemini_api(project_id)
        raise ValueError(f"unknown backend {kind!r}; expected one of {BACKENDS}")

    # ------------------------------------------------------------------------------------------ other services
    def vertex_batch(self, project_id: str | None, location: str):
        """Vertex AI batch prediction jobs (google-genai)."""
        from .backends.vertex_batch import VertexBatchPredictionBackend

        return VertexBatchPredictionBackend(**self._vertex_connection(project_id, location))

    def vertex_evaluation(self, project_id: str | None, location: str):
        """Vertex AI's evaluation service (the autorater, ``:evaluateInstances``)."""
        from .backends.vertex_evaluation import VertexEvaluationBackend

        return VertexEvaluationBackend(**self._vertex_connection(project_id, location))

    def registry(self, project_id: str | None, location: str):
        """Vertex AI Model Registry + endpoints (GAPIC REST)."""
        from .backends.vertex_registry import VertexRegistry

        location, base_url = validate_location(location), self.api_base_url
        project = self.resolve_project(project_id)
        return VertexRegistry(project=project, location=location, credentials=self.get_credentials(),
                              base_url=base_url)

    def storage(self):
        """google.cloud.storage.Client with the connection's credentials (honours STORAGE_EMULATOR_HOST); one per
        hook."""
        if self._storage is None:
            from airflow.providers.google.cloud.hooks.gcs import GCSHook

            from .backends import gcs

            if os.environ.get("STORAGE_EMULATOR_HOST"):        # google-cloud-storage sends the credentials there
                check_base_url(gcs.rest_base_url(), "STORAGE_EMULATOR_HOST")

            self._storage = GCSHook(gcp_conn_id=self.gcp_conn_id,
                                    impersonation_chain=self.impersonation_chain).get_conn()
        return self._storage
