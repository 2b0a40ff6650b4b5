"""The first step of a pipeline built from a reviewed file: the run may tighten the file's policy, never loosen it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException


class GeminiPolicyCheckOperator(BaseOperator):
    """Checks a run's conf and Params against the pipeline file the DAG was built from
    (``gemini_tuning.pipelines.policy.check_conf``) before anything is read, uploaded or created: a value that
    loosens the policy (a lower threshold, approval off, a higher budget), a fixed field (``gcs_prefix``, the
    backend, the primary metric…), a path outside the allowed storage roots, or a project, location or base model
    outside the allowed lists fails the run (no retry), naming each field, the policy's value and the asked one.

    The Params form and the REST API already refuse most of these (each run Param's schema is bounded by the
    policy); this step is the same check done by the pipeline's own code, so a run started any other way (a conf
    key the form does not show, an edited DAG run) is refused too.

    Returns the provenance the verdict and the report carry: ``{"id", "file", "revision", "policy_hash",
    "effective": {...}, "tightened": {...}}``.

    :param pipeline: the pipeline as parsed (``gemini_tuning.pipelines.loader.Pipeline.to_record()``: the spec,
        the file, its revision and policy hash), serialized into the DAG at parse time so the check uses exactly
        the reviewed file the DAG was built from.
    """

    ui_color = "#fde7c4"

    def __init__(self, *, pipeline: Mapping[str, Any], **kwargs):
        kwargs.setdefault("retries", 0)
        super().__init__(**kwargs)
        self.pipeline = dict(pipeline)

    def execute(self, context) -> dict:
        from ..pipelines.loader import Pipeline
        from ..pipelines.policy import RUN_FIELDS, PolicyViolation, check_conf

        pipeline = Pipeline.from_record(self.pipeline)
        dag_run = context.get("dag_run")
        conf = dict(getattr(dag_run, "conf", None) or {})
        params = context.get("params") or {}
        # the Params the run resolved (form or defaults) and every conf key (one the form does not show, too)
        asked = {name: params[name] for name in RUN_FIELDS if name in params}
        asked.update(conf)
        try:
            effective = check_conf(pipeline, asked)
        except PolicyViolation as exc:
            raise AirflowFailException(str(exc)) from exc
        defaults = pipeline.defaults()
        tightened = {k: v for k, v in effective.items() if k in asked and defaults.get(k) != v}
        self.log.info("pipeline %s (%s, revision %s, policy %s): the run's values are within the policy%s",
                      pipeline.spec.id, pipeline.file, pipeline.revision[:12], pipeline.policy_hash[:12],
                      f"; changed by the run: {sorted(tightened)}" if tightened else "")
        return {**provenance(self.pipeline), "tightened": tightened}


def provenance(record: Mapping[str, Any]) -> dict:
    """What the verdict record and the report name: the pipeline id, its file, the file's revision (content hash)
    and the policy hash.

    :param record: a pipeline's record (``gemini_tuning.pipelines.loader.Pipeline.to_record()``).
    """
    return {k: record.get(k) for k in ("id", "file", "revision", "policy_hash")}
