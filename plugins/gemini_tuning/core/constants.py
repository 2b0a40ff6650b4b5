"""Values several layers share, with one home each: the UI's URL prefix (mounted by ``plugin``, linked to by
``links``, the approval's HITL links and the notifications, routed by ``ui.pages``), the XCom keys the operators
push and the links, the notifications and the UI read, and the champion pointer's size bound (written by
``services.champion``, read by it and by the UI)."""

from __future__ import annotations

#: Where the plugin mounts its UI (the overview, the run pages and the reports) under the Airflow api-server.
UI_PREFIX = "/gemini-tuning"

#: The tuning job's XCom (name, ref, backend, console url): pushed by the tuning operator and the sensor, read by
#: ``links.TuningJobLink`` and the UI's run page.
JOB_XCOM = "gemini_tuning_job"
#: The gate's decision XCom (decision, summary, rules, verdict_uri): pushed by ``operators.gate``, read by the
#: DAG's templates, the notifications and the UI.
GATE_XCOM = "gate"

#: The largest champion pointer: ``services.champion`` refuses to write a bigger one
#: (``champion_pointer.check_pointer_size``: ``backends.gcs.ObjectTooLarge``) and every reader (the services, the
#: UI) reads up to this size. A pointer (with one previous champion inside) is a few KB.
MAX_POINTER_BYTES = 64 * 1024
