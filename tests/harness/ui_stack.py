"""A real Airflow (api-server, scheduler, dag-processor, triggerer) with this package's plugin and the pipeline
DAG, against an emulator in its own process: what the UI tests drive with Chromium.

``python -m harness.ui_stack`` starts one and prints its URLs and a login token, for poking at the page by hand
(Ctrl-C stops it).
"""

from __future__ import annotations

import json
import os
import signal
from contextlib import contextmanager
from pathlib import Path

from harness.airflow_services import AirflowServices
from harness.emulator_process import start_emulator, stop_emulator
from harness.paths import DAGS, PLUGINS

PROJECT, BUCKET = "ui-project", "gemini-tuning-ui"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


@contextmanager
def ui_stack(tmp: Path, *, time_scale: float = 0.12, extra_env: dict | None = None,
             dag_files: tuple[Path, ...] = (DAGS / "gemini_tuning_pipeline.py",),
             dag_ids: tuple[str, ...] = ("gemini_tuning_pipeline",)):
    """Yields ``(services, emulator_info)``; everything is stopped by process group afterwards. ``dag_files`` are
    linked into the stack's DAG folder; ``dag_ids`` are awaited."""
    emu, info = start_emulator(tmp / "emu", bucket=BUCKET, time_scale=time_scale)
    try:
        dags = tmp / "dags"
        dags.mkdir(exist_ok=True)
        for path in dag_files:
            link = dags / path.name
            if not link.exists():
                link.symlink_to(path)
        env = {"GEMINI_TUNING_EMULATOR_URL": info["url"], "STORAGE_EMULATOR_HOST": info["gcs_url"],
               "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
               "AIRFLOW__GEMINI_TUNING__UI_CACHE_DIR": str(tmp / "ui-cache"),
               "AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT": json.dumps({"conn_type": "google_cloud_platform",
                                                                "extra": {"is_anonymous": True, "project": PROJECT}}),
               **(extra_env or {})}
        services = AirflowServices(dags_folder=dags, plugins_folder=PLUGINS, extra_env=env,
                                   home=tmp / "airflow")
        try:
            services.start()
            for dag_id in dag_ids:
                services.wait_dag_parsed(dag_id)
            yield services, info
        finally:
            services.stop()
    finally:
        stop_emulator(emu)


def upload(info: dict, name: str, data: bytes) -> str:
    import requests

    requests.post(f"{info['gcs_url']}/upload/storage/v1/b/{BUCKET}/o", params={"uploadType": "media", "name": name},
                  data=data, timeout=60).raise_for_status()
    return f"gs://{BUCKET}/{name}"


if __name__ == "__main__":
    import tempfile
    import time

    def _stop(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)   # background jobs of a non-interactive shell ignore SIGINT
    signal.signal(signal.SIGINT, _stop)

    with ui_stack(Path(tempfile.mkdtemp(prefix="ui-stack-"))) as (af, emu_info):
        print(json.dumps({"api": af.base_url, "emulator": emu_info, "token": af.token(), "home": str(af.home)}),
              flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
