"""What the UI page shows, from what Airflow and the pipeline already keep: pure functions, no Airflow, no I/O.

Inputs are :class:`RunRecord` s (a DAG run, its task instances with their operator class, and the XComs of this
package's operators), the champion pointers, and live job statuses (from ``ui.status_cache``). Tasks are recognised
by their operator class, not their task id, so any DAG built from this package's operators shows up.

Nothing read here is trusted (see :mod:`.fields`): every XCom field, live status and champion pointer is type
checked; a run whose values do not check out keeps its row, with ``unreadable: <why>`` for each section that could
not be read (its other sections are shown). Job and model names, projects and locations are checked with
:mod:`..core.names` before a status is asked for (:func:`live_job`). A run of a DAG whose XCom the caller may not
read is shown by :func:`restricted_view`: state and times only.

The modules: :mod:`.records` (:class:`RunRecord`, the names a run carries), :mod:`.run_views` (the run page) and
:mod:`.overview_views` (the overview); this module is the import path of them all.
"""

from __future__ import annotations

from .fields import Unreadable
from .overview_views import (
    RESTRICTED,
    assign_pipelines,
    champion_view,
    history,
    overview,
    pointers_to_read,
    run_summary,
)
from .records import (
    ACTIVE_TASK_STATES,
    CONSOLE_PREFIXES,
    JOB_XCOM,
    ROLES,
    STEP_ORDER,
    XCOM_KEYS,
    RunRecord,
    is_ours,
    job_ref,
    live_job,
    pipeline_key,
    pointer_uri_of,
)
from .run_views import (
    DECISION_LABELS,
    GATE_DECISIONS,
    MAX_TAGS,
    SUMMARY_METRICS,
    decision_view,
    evaluation_view,
    gate_view,
    job_summary,
    primary_metric,
    restricted_view,
    run_view,
    tuning_view,
)

__all__ = ["ACTIVE_TASK_STATES", "CONSOLE_PREFIXES", "DECISION_LABELS", "GATE_DECISIONS", "JOB_XCOM", "MAX_TAGS",
           "RESTRICTED", "ROLES", "STEP_ORDER", "SUMMARY_METRICS", "XCOM_KEYS", "RunRecord", "Unreadable",
           "assign_pipelines", "champion_view", "decision_view", "evaluation_view", "gate_view", "history", "is_ours",
           "job_ref", "job_summary", "live_job", "overview", "pipeline_key", "pointer_uri_of", "pointers_to_read",
           "primary_metric", "restricted_view", "run_summary", "run_view", "tuning_view"]
