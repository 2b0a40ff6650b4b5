"""The input policy of a task (``core.inputs``) from this deployment's settings and the run's own bucket.

Settings (``[gemini_tuning]`` in airflow.cfg or ``AIRFLOW__GEMINI_TUNING__*``), read when the task runs:

* ``input_roots``: directories local inputs may be read from, colon- or comma-separated. Default: the deployment's
  ``include`` folder, i.e. ``include/`` beside the DAGs folder and beside the ``plugins/`` folder holding this
  package (in this repository both are its ``include/``).
* ``allowed_buckets``: buckets ``gs://`` inputs may be read from besides the run's own (the bucket of the task's
  destination / results prefix / champion pointer, which is always allowed), comma-separated (``gs://``
  optional). Default: none.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from ..core.gcs_uri import bucket_of
from ..core.inputs import InputPolicy, split_setting
from ..core.safety import REPO_DEMO_DIR

#: ``include/`` of the repository (the package lives in ``<repo>/plugins/gemini_tuning``)
REPO_INCLUDE_DIR = os.path.dirname(REPO_DEMO_DIR)


def _setting(key: str) -> str:
    from airflow.configuration import conf

    return conf.get("gemini_tuning", key, fallback="") or ""


def default_input_roots() -> tuple[str, ...]:
    """``include/`` beside the DAGs folder and the repository's ``include/`` (deduplicated)."""
    from airflow.configuration import conf

    roots = []
    dags = conf.get("core", "dags_folder", fallback="") or ""
    if dags:
        roots.append(os.path.join(os.path.dirname(os.path.realpath(os.path.expanduser(dags))), "include"))
    roots.append(REPO_INCLUDE_DIR)
    return tuple(dict.fromkeys(os.path.realpath(r) for r in roots))


def input_policy(run_uris: Iterable[str | None] = ()) -> InputPolicy:
    """The roots and buckets a task may read inputs from: the settings, plus the buckets of ``run_uris`` (the
    task's own destination, results prefix, champion pointer)."""
    roots = split_setting(_setting("input_roots"), paths=True) or default_input_roots()
    # a run URI with an invalid bucket name adds no bucket (the task's own read or write of it fails anyway)
    own = [bucket for uri in run_uris if (bucket := bucket_of(uri))]
    buckets = tuple(dict.fromkeys([*own, *split_setting(_setting("allowed_buckets"), paths=False)]))
    return InputPolicy(roots=tuple(roots), buckets=buckets)
