"""The base of every operator (and the sensor) of this package: the Google connection arguments in one place."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cached_property
from typing import Any, TypeVar

from airflow.sdk import BaseOperator

T = TypeVar("T")
_EMPTY = (None, "", "None")


def optional(value: Any, cast: Callable[[Any], T] | None = None) -> T | None:
    """A templated argument that may be empty: ``None``, ``""`` and ``"None"`` (what Jinja renders for a None
    without ``render_template_as_native_obj``) become None; anything else is passed through ``cast``."""
    if value in _EMPTY:
        return None
    return cast(value) if cast is not None else value


class GeminiBaseOperator(BaseOperator):
    """Connection plumbing for every operator and sensor here: auth (the Google connection, impersonation, a Gemini
    API key connection) and the service URL (emulator) are set once and reach every backend through one hook.

    :param project_id: the Google Cloud project (templated). Empty: the connection's project.
    :param location: the Vertex AI region (templated).
    :param gcp_conn_id: the Google Cloud connection.
    :param impersonation_chain: a service account, or a chain of them, to impersonate with short-term credentials.
    :param gemini_api_conn_id: a connection whose password (or extra ``api_key``) is a Gemini API key (Gemini API
        backend only); without it the Google connection's OAuth credentials are used.
    :param api_base_url: another host for every Vertex AI / Gemini API call, e.g. the offline emulator. Empty: the
        connection extra ``api_base_url``, then ``$GEMINI_TUNING_EMULATOR_URL``; all unset means Google's endpoints.
    """

    template_fields: Sequence[str] = ("project_id", "location")

    def __init__(self, *, project_id: str | None = None, location: str = "us-central1",
                 gcp_conn_id: str = "google_cloud_default", impersonation_chain: str | Sequence[str] | None = None,
                 gemini_api_conn_id: str | None = None, api_base_url: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.project_id = project_id
        self.location = location
        self.gcp_conn_id = gcp_conn_id
        self.impersonation_chain = impersonation_chain
        self.gemini_api_conn_id = gemini_api_conn_id
        self.api_base_url = api_base_url

    @cached_property
    def hook(self):
        """The one :class:`~gemini_tuning.hooks.GeminiTuningHook` of this task (built on first use, at run time)."""
        from ..hooks import GeminiTuningHook

        return GeminiTuningHook(gcp_conn_id=self.gcp_conn_id, impersonation_chain=self.impersonation_chain,
                                api_base_url=optional(self.api_base_url),
                                gemini_api_conn_id=optional(self.gemini_api_conn_id))

    def tuning_backend(self, kind: str):
        """The tuning backend ``kind`` (``vertex`` | ``gemini_api``) for this task's project and location."""
        return self.hook.backend(kind, project_id=optional(self.project_id), location=self.location)

    def trigger_connection(self) -> dict:
        """The connection arguments a trigger needs to rebuild the same backend in the triggerer (no secrets)."""
        return {"project_id": optional(self.project_id) or self.hook.project_id, "location": self.location,
                "gcp_conn_id": self.gcp_conn_id, "impersonation_chain": self.impersonation_chain,
                "api_base_url": optional(self.api_base_url), "gemini_api_conn_id": optional(self.gemini_api_conn_id)}
