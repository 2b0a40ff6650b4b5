"""Safe schedules: an unattended run with the demo configuration must not reach Google's real services.

The bundled pipeline's Params default to the demo data (``include/demo/...``) and the demo bucket
(``gs://gemini-tuning-demo``) so that the demo runs out of the box on the emulator. A deployment that unpauses the
DAG without configuring its own values would, on the first scheduled run, upload the demo tickets to a bucket it
does not own and pay for a tuning job on them. :func:`decide` is the rule the operators apply before any call:

================================  =============================  ==========================================
run type                          endpoint                        demo data / demo bucket in the arguments
================================  =============================  ==========================================
any                               any                             none: allowed
any                               emulator (a base URL is set)    allowed (the demo's own case)
manual                            Google                          allowed, with a loud warning
scheduled, asset_triggered,       Google                          **refused** before any upload or create
backfill, operator_triggered,
asset_materialization, unknown
================================  =============================  ==========================================

"Emulator" means a base URL replaces Google's endpoints: the operator's ``api_base_url``, the connection extra
``api_base_url`` or ``$GEMINI_TUNING_EMULATOR_URL`` (``hooks.GeminiTuningHook.api_base_url``). Every run type a
person did not start from the UI/API (``manual``) counts as unattended; an unknown run type too (fail-safe).

:func:`load_pipeline_config` reads a deployment's own Param defaults (a JSON object, Param name → value) from the file
``$GEMINI_TUNING_PIPELINE_CONFIG`` names; the DAG merges it over the demo defaults at parse time (a file read: no
metadata-DB call at parse time).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .gcs_uri import bucket_of

DEMO_BUCKET = "gemini-tuning-demo"
#: The repository's demo data directory (the package lives in ``<repo>/plugins/gemini_tuning``).
_HERE = Path(__file__).resolve()
REPO_DEMO_DIR = str((_HERE.parents[3] if len(_HERE.parents) > 3 else _HERE.parent) / "include" / "demo")
ATTENDED_RUN_TYPES = frozenset({"manual"})
CONFIG_ENV = "GEMINI_TUNING_PIPELINE_CONFIG"
HOW_TO_CONFIGURE = (
    f"Configure this deployment's own values: for the bundled pipeline, point ${CONFIG_ENV} at a JSON file of Param "
    "defaults (training_data, eval_prompts, system_instruction, gcs_prefix, project_id, ...; README \"Guard "
    "rails\"), or pass real values in the run's conf; for another DAG, change the operator's arguments. To try the "
    "demo against Google on purpose, trigger the run manually")


@dataclass(frozen=True)
class SafetyVerdict:
    """What :func:`decide` says about one run's arguments.

    :param allowed: False: the run is refused before any upload or create.
    :param warn: allowed, but log loudly (a manual run with demo values against Google).
    :param message: one paragraph for the task log: what was found and what to configure.
    :param demo_arguments: ``"name=value (why)"`` of each argument that points at demo data (empty: none).
    """

    allowed: bool
    warn: bool                       # allowed, but log loudly (a manual run with demo values against Google)
    message: str
    demo_arguments: tuple[str, ...]  # "name=value (why)" of each argument that points at demo data


def is_demo_location(value: object, demo_roots: Iterable[str] = (REPO_DEMO_DIR,)) -> str | None:
    """Why ``value`` is demo data (the demo bucket, or a file under a demo directory), or None."""
    if not isinstance(value, str) or value in ("", "None"):
        return None
    if value.startswith("gs://"):
        bucket = bucket_of(value)   # the bucket only: a demo-bucket URI with a bad object name is still demo data
        return f"the demo bucket gs://{DEMO_BUCKET}" if bucket == DEMO_BUCKET else None
    if "://" in value or "\n" in value:  # another scheme, or inline text (a system instruction)
        return None
    path = os.path.realpath(os.path.expanduser(value))
    for root in demo_roots:
        real_root = os.path.realpath(root)
        if path == real_root or path.startswith(real_root.rstrip(os.sep) + os.sep):
            return f"demo data under {real_root}"
    return None


def decide(*, run_type: str | None, api_base_url: str | None, arguments: Mapping[str, object],
           demo_roots: Iterable[str] = (REPO_DEMO_DIR,)) -> SafetyVerdict:
    """May a run of type ``run_type`` use ``arguments`` (name → path / URI) against ``api_base_url`` (None: Google's
    real endpoints)? See the module docstring for the rule."""
    roots = tuple(demo_roots)
    hits = tuple(f"{name}={value} ({why})" for name, value in arguments.items()
                 if (why := is_demo_location(value, roots)))
    if not hits:
        return SafetyVerdict(True, False, "no demo data or demo bucket in the arguments", ())
    listed = "; ".join(hits)
    if api_base_url:
        return SafetyVerdict(True, False, f"demo configuration on the emulator at {api_base_url}: {listed}", hits)
    if run_type in ATTENDED_RUN_TYPES:
        return SafetyVerdict(True, True, (
            f"THIS MANUAL RUN USES THE DEMO CONFIGURATION AGAINST GOOGLE'S REAL SERVICES (billed): {listed}. Scheduled "
            f"runs with these values are refused. {HOW_TO_CONFIGURE}."), hits)
    return SafetyVerdict(False, False, (
        f"refusing a {run_type or 'unknown-type'} run with the demo configuration against Google's real services "
        f"(no api_base_url, no $GEMINI_TUNING_EMULATOR_URL): {listed}. Nothing was uploaded or created. "
        f"{HOW_TO_CONFIGURE}."), hits)


def load_pipeline_config(path: str, known: Iterable[str]) -> dict:
    """A deployment's Param defaults from the JSON object in ``path`` (keys starting with ``_`` are comments).
    Raises ``ValueError`` naming the file for unreadable JSON, a non-object, or keys that are not Params."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{CONFIG_ENV}={path}: cannot read a JSON object of Param defaults: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{CONFIG_ENV}={path}: expected a JSON object of Param defaults, got {type(data).__name__}")
    data = {k: v for k, v in data.items() if not str(k).startswith("_")}
    names = set(known)
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{CONFIG_ENV}={path}: unknown Param(s) {', '.join(unknown)}; "
                         f"known: {', '.join(sorted(names))}")
    return data
