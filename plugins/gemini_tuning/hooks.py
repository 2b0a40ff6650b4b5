"""The one Airflow hook: credentials from the Google connection, the base URL, and the backends built from them."""

from __future__ import annotations

import os
from collections.abc import Sequence

from airflow.providers.google.common.hooks.base_google import GoogleBaseHook

from .backends.gemini_api import TUNING_SCOPE, GeminiApiTuningBackend
from .backends.retry import RetryPolicy
from .backends.vertex import VertexTuningBackend

EMULATOR_ENV = "GEMINI_TUNING_EMULATOR_URL"


class GeminiTuningHook(GoogleBaseHook):
    """Builds the Vertex AI / Gemini API backends and a GCS client from one Google connection.

    ``api_base_url`` (argument, else the connection extra ``api_base_url``, else ``$GEMINI_TUNING_EMULATOR_URL``)
    points every service at another host, e.g. the offline emulator; unset means Google's own endpoints.
    The Gemini API uses an API key from ``gemini_api_conn_id`` (its password, or extra ``api_key``) when given,
    else OAuth credentials from the Google connection with the ``generative-language.tuning`` scope.
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

    @property
    def api_base_url(self) -> str | None:
        return self._api_base_url or self.extras.get("api_base_url") or os.environ.get(EMULATOR_ENV) or None

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
        project = project_id or self.project_id
        if not project:
            raise ValueError(f"no project: pass project_id or set it on connection {self.gcp_conn_id!r}")
        return project

    def vertex(self, project_id: str | None, location: str) -> VertexTuningBackend:
        return VertexTuningBackend(project=self.resolve_project(project_id), location=location,
                                   credentials=self._token_credentials(), base_url=self.api_base_url,
                                   retry_policy=self.retry_policy)

    def gemini_api(self, project_id: str | None = None) -> GeminiApiTuningBackend:
        if self.gemini_api_conn_id:
            conn = self.get_connection(self.gemini_api_conn_id)
            key = conn.password or conn.extra_dejson.get("api_key")
            if not key:
                raise ValueError(f"connection {self.gemini_api_conn_id!r} has no API key (password or extra api_key)")
            return GeminiApiTuningBackend(base_url=self.api_base_url, api_key=key, retry_policy=self.retry_policy)
        return GeminiApiTuningBackend(base_url=self.api_base_url, credentials=self._token_credentials(),
                                      quota_project=project_id or self.project_id, retry_policy=self.retry_policy)

    def backend(self, kind: str, *, project_id: str | None = None, location: str = "us-central1"):
        if kind == "vertex":
            return self.vertex(project_id, location)
        if kind == "gemini_api":
            return self.gemini_api(project_id)
        raise ValueError(f"unknown backend {kind!r}; expected 'vertex' or 'gemini_api'")

    def registry(self, project_id: str | None, location: str):
        """Vertex AI Model Registry + endpoints (GAPIC REST)."""
        from .backends.vertex_registry import VertexRegistry

        return VertexRegistry(project=self.resolve_project(project_id), location=location,
                              credentials=self.get_credentials(), base_url=self.api_base_url)

    def storage(self):
        """google.cloud.storage.Client with the connection's credentials (honours STORAGE_EMULATOR_HOST); one per
        hook."""
        if getattr(self, "_storage", None) is None:
            from airflow.providers.google.cloud.hooks.gcs import GCSHook

            self._storage = GCSHook(gcp_conn_id=self.gcp_conn_id,
                                    impersonation_chain=self.impersonation_chain).get_conn()
        return self._storage
