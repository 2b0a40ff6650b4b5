"""A DAG with team access (``access_control``) without Airflow's deprecation warning on every parse.

Airflow 3 warns ("The airflow.security.permissions module is deprecated ...", ``RemovedInAirflow4Warning``)
whenever a DAG sets ``access_control``, whatever its content. The FAB auth manager still reads ``access_control``
and syncs it into its roles, and it is the only DAG-level permission Airflow 3 offers (README "Team access"), so
the pipeline factory uses it on purpose; this silences exactly that warning, for the DAG's construction only.
"""

from __future__ import annotations

import contextlib
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


@contextlib.contextmanager
def params_set_aside(dag):
    """Build a DAG's tasks without a copy of the DAG's Params in each.

    Airflow deep-copies the DAG's ``params`` into every task it creates (``airflow/sdk/bases/operator.py``
    ``_get_parent_defaults``): for a pipeline DAG (about 20 tasks, 20 run Params with their schemas) that was half
    the cost of parsing a pipeline file (``scripts/bench_pipelines.py``). A task needs no copy: at run time
    ``process_params`` merges the DAG's params, then the task's own, then the run's conf
    (``airflow/sdk/definitions/param.py``). Inside this block the DAG has no params; they are back on exit.

    :param dag: the DAG whose tasks are being created (``with dag, params_set_aside(dag): ...``).
    """
    from airflow.sdk.definitions.param import ParamsDict

    kept = dag.params
    # object.__setattr__: the DAG's own setter validates every Param again (jsonschema's check_schema, the other
    # half of the parse cost); these are the params it validated when it was built
    object.__setattr__(dag, "params", ParamsDict())
    try:
        yield dag
    finally:
        object.__setattr__(dag, "params", kept)
