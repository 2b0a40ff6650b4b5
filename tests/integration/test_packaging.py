"""Both ways of installing the provider, each in a fresh process with nothing of this checkout on its path:

* the wheel (``pip wheel .``) installed into a scratch venv: ``airflow providers list`` and the providers manager
  show it with both extra links and the ``gemini_api`` connection type, the plugin comes from its entry point, and
  the pipeline DAG (read from ``dags/``, no plugins folder) runs end to end on the emulator;
* the Astro-style copy of ``dags/``, ``plugins/`` and ``include/`` into a deployment folder, no install: the plugin
  comes from the plugins folder and the DAG imports cleanly.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.clients import BUCKET
from harness.paths import ROOT

pytestmark = pytest.mark.fast

PROJECT_FILES = ("pyproject.toml", "README.md", "plugins")


def _clean_env(tmp: Path, **extra: str) -> dict:
    """No PYTHONPATH (pytest puts plugins/ there), a private Airflow home, the emulator's variables kept."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW") and k != "PYTHONPATH"}
    home = tmp / "airflow-home"
    home.mkdir(exist_ok=True)
    env.update(AIRFLOW_HOME=str(home), AIRFLOW__CORE__LOAD_EXAMPLES="False", AIRFLOW__CORE__UNIT_TEST_MODE="True",
               AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home}/airflow.db", **extra)
    return env


def _run(cmd, env, cwd, timeout=300) -> str:
    out = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{cmd} -> {out.returncode}\n{out.stdout[-3000:]}\n{out.stderr[-5000:]}"
    return out.stdout


def _results(stdout: str) -> list:
    """The JSON of every ``RESULT`` line a probe printed (Airflow logs to stdout too)."""
    return [json.loads(line[len("RESULT "):]) for line in stdout.splitlines() if line.startswith("RESULT ")]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in PROJECT_FILES:
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(ROOT / name, src / name)
    dist = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(src), "-w", str(dist)],
         os.environ, src)
    (whl,) = dist.glob("airflow_provider_gemini_tuning-*.whl")
    return whl


@pytest.fixture(scope="module")
def scratch_venv(wheel, tmp_path_factory) -> Path:
    """A new venv holding only the wheel; Airflow and the Google clients come from this test run's environment
    through a .pth file (installing them again would only re-download the same pins)."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys._base_executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    purelib = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                        os.environ, venv).strip())
    (purelib / "_deps_from_test_env.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    _run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], os.environ, venv)
    return py


PROBE = textwrap.dedent("""
    import json
    from airflow.providers_manager import ProvidersManager
    from airflow import plugins_manager
    import gemini_tuning          # after airflow: a plugins folder is put on sys.path when airflow starts
    pm = ProvidersManager()
    plugins_manager.ensure_plugins_loaded() if hasattr(plugins_manager, "ensure_plugins_loaded") else None
    plugins = plugins_manager._get_plugins()[0] if hasattr(plugins_manager, "_get_plugins") else plugins_manager.plugins
    print("RESULT", json.dumps({
        "package_file": gemini_tuning.__file__,
        "providers": {k: v.version for k, v in pm.providers.items()},
        "links": sorted(pm.extra_links_class_names),
        "conn_types": sorted(pm.hooks),
        "plugins": {p.name: str(getattr(p, "source", "")) for p in plugins},
    }))
""")


def test_wheel_installs_a_working_provider(scratch_venv, tmp_path, emulator):
    env = _clean_env(tmp_path, AIRFLOW__CORE__PLUGINS_FOLDER=str(tmp_path / "no-plugins"))
    out = _run([str(scratch_venv), "-m", "airflow", "providers", "list", "-o", "json"], env, tmp_path)
    listed = json.loads(out.strip().splitlines()[-1])
    ours = [p for p in listed if p["package_name"] == "airflow-provider-gemini-tuning"]
    assert ours and ours[0]["version"] == __import__("gemini_tuning").__version__, listed

    (info,) = _results(_run([str(scratch_venv), "-c", PROBE], env, tmp_path))
    assert str(ROOT) not in info["package_file"] and "site-packages" in info["package_file"]
    assert {"gemini_tuning.links.TuningJobLink", "gemini_tuning.links.ReportLink"} <= set(info["links"])
    assert "gemini_api" in info["conn_types"]
    assert "gemini_tuning" in info["plugins"], info["plugins"]
    print(info["plugins"])


RUN_PIPELINE = textwrap.dedent("""
    import json, sys
    from airflow.dag_processing.dagbag import DagBag
    from airflow.utils.db import resetdb
    resetdb()
    bag = DagBag(dag_folder=sys.argv[1], safe_mode=False)
    assert not bag.import_errors, bag.import_errors
    dr = bag.dags["gemini_tuning_pipeline"].test(run_conf=json.loads(sys.argv[2]))
    print("RESULT", json.dumps({"state": str(dr.state),
                                "tasks": {t.task_id: str(t.state) for t in dr.get_task_instances()}}))
""")


def test_installed_wheel_runs_the_pipeline_without_a_plugins_folder(scratch_venv, tmp_path, emulator):
    env = _clean_env(tmp_path, AIRFLOW__CORE__PLUGINS_FOLDER=str(tmp_path / "no-plugins"),
                     AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"), AIRFLOW__GEMINI_TUNING__OPEN_PIPELINE_DAG="True",
                     AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT=json.dumps({"conn_type": "google_cloud_platform", "extra": {
                         "is_anonymous": True, "project": "test-project"}}))
    conf = {"gcs_prefix": f"gs://{BUCKET}/wheel-{tmp_path.name[-8:]}", "eval_rpm": 12000, "eval_concurrency": 32,
            "poll_policy": {"initial_seconds": 0.5, "min_seconds": 0.5, "max_seconds": 2, "fallback_max_seconds": 1}}
    out = _run([str(scratch_venv), "-c", RUN_PIPELINE, str(ROOT / "dags"), json.dumps(conf)], env, tmp_path,
               timeout=600)
    (result,) = _results(out)
    assert result["state"] == "success", result
    assert result["tasks"]["tune"] == "success" and result["tasks"]["promote"] == "success", result


def test_plugins_folder_copy_works_without_install(tmp_path):
    deploy = tmp_path / "deployment"
    for name in ("dags", "plugins", "include", "pipelines"):
        shutil.copytree(ROOT / name, deploy / name, ignore=shutil.ignore_patterns("__pycache__"))
    env = _clean_env(tmp_path, AIRFLOW__CORE__DAGS_FOLDER=str(deploy / "dags"),
                     AIRFLOW__CORE__PLUGINS_FOLDER=str(deploy / "plugins"))
    probe = PROBE + textwrap.dedent("""
        import sys
        from airflow.dag_processing.dagbag import DagBag
        bag = DagBag(dag_folder=sys.argv[1], safe_mode=False)
        print("RESULT", json.dumps({"import_errors": bag.import_errors, "dags": sorted(bag.dags)}))
    """)
    info, bag = _results(_run([sys.executable, "-c", probe, str(deploy / "dags")], env, tmp_path))
    assert info["package_file"].startswith(str(deploy / "plugins")), info["package_file"]
    assert "airflow-provider-gemini-tuning" not in info["providers"]         # nothing installed
    assert "gemini_tuning" in info["plugins"], info["plugins"]
    # the reviewed pipeline files beside dags/ (each a pipeline and its rollback); the open pipeline and the open
    # rollback (every value a run Param) are off unless [gemini_tuning] open_pipeline_dag is set
    assert bag == {"import_errors": {}, "dags": ["gemini_tuning__replies", "gemini_tuning__replies__rollback",
                                                 "gemini_tuning__router", "gemini_tuning__router__rollback"]}
