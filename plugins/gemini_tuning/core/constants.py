"""Values several layers share, with one home each (the UI's URL prefix is mounted by ``plugin``, linked to by
``links``, the approval's HITL links and the notifications, and routed by ``ui.pages``)."""

from __future__ import annotations

#: Where the plugin mounts its UI (the overview, the run pages and the reports) under the Airflow api-server.
UI_PREFIX = "/gemini-tuning"
