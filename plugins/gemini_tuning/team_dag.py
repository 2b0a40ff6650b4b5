"""A DAG with team access (``access_control``) without Airflow's deprecation warning on every parse.

Airflow 3 warns ("The airflow.security.permissions module is deprecated ...", ``RemovedInAirflow4Warning``)
whenever a DAG sets ``access_control``, whatever its content. The FAB auth manager still reads ``access_control``
and syncs it into its roles, and it is the only DAG-level permission Airflow 3 offers (README "Team access"), so
the pipeline factory uses it on purpose; this silences exactly that warning, for the DAG's construction only.
"""

from __future__ import annotations

import warnings

ACCESS_CONTROL_WARNING = "The airflow.security.permissions module is deprecated"


def team_dag(**kwargs):
    """An ``airflow.sdk.DAG`` built from ``kwargs``; with ``access_control`` set, without its deprecation warning.

    :param kwargs: the DAG's arguments, as for ``airflow.sdk.DAG``.
    """
    from airflow.sdk import DAG

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=ACCESS_CONTROL_WARNING)
        return DAG(**kwargs)
