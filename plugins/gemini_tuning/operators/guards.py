"""Guard rails shared by the operators (and the DAG): the scheduled-run demo guard and a deployment's Param defaults.

The rules are pure (``core.safety``, ``core.budget``) and applied by ``services.tuning.guard`` (which the tuning
service runs itself); this module feeds them an Airflow task context and fails the task without retries.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable, Mapping

from airflow.sdk.exceptions import AirflowFailException

from ..core.safety import CONFIG_ENV, SafetyVerdict, load_pipeline_config
from ..services.tuning.guard import BANNER, Refused, demo_guard

__all__ = ["BANNER", "deployment_params", "guard_demo_configuration", "run_type_of"]


def run_type_of(context) -> str | None:
    """The run type of the task's DAG run (``manual``, ``scheduled``, ``asset_triggered``, ...); None if unknown."""
    dag_run = context.get("dag_run") if hasattr(context, "get") else None
    run_type = getattr(dag_run, "run_type", None)
    if run_type is None:
        return None
    return str(getattr(run_type, "value", run_type))


def guard_demo_configuration(operator, context, arguments: Mapping[str, object],
                             demo_roots: Iterable[str] | None = None) -> SafetyVerdict:
    """Raise :class:`AirflowFailException` (no retry) when an unattended run would use the demo data or the demo
    bucket against Google's real services; log a loud warning for a manual one (``core.safety.decide``). Call it
    before any upload or create.

    :param operator: the task's operator (its hook's ``api_base_url``, its log).
    :param context: the task context (the DAG run's type).
    :param arguments: name -> path or URI of every input and output location.
    :param demo_roots: directories of demo data besides the repository's.
    """
    try:
        return demo_guard(run_type=run_type_of(context), api_base_url=operator.hook.api_base_url,
                          arguments=arguments, log=operator.log, demo_roots=demo_roots)
    except Refused as exc:
        raise AirflowFailException(str(exc)) from exc


def deployment_params(params: dict, path: str | None = None) -> dict:
    """``params`` (the DAG's Params, demo defaults) with a deployment's own defaults merged over them: the JSON
    object in the file ``path`` (default ``$GEMINI_TUNING_PIPELINE_CONFIG``; unset or empty: ``params`` unchanged).
    Read at parse time from a file (no metadata-DB call). Each value is validated against its Param's schema; an
    unknown name or an invalid value raises ``ValueError`` naming the file (a DAG import error, not a silent
    fallback to the demo values)."""
    path = os.environ.get(CONFIG_ENV) if path is None else path
    if not path:
        return params
    overrides = load_pipeline_config(path, params)
    merged = dict(params)
    for name, value in overrides.items():
        current = params[name]
        if hasattr(current, "resolve") and hasattr(current, "schema"):  # an airflow.sdk.Param
            param = copy.copy(current)
            try:
                param.resolve(value)
            except Exception as exc:  # ParamValidationError (jsonschema's message)
                raise ValueError(f"{CONFIG_ENV}={path}: {name}={value!r} is not a valid value: {exc}") from exc
            merged[name] = param
        else:
            merged[name] = value
    return merged
