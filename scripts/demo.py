"""The README's first command: the whole pipeline, twice, on the local emulator (no Google Cloud account).

1. starts the emulator (Vertex AI + Gemini API + GCS) as its own process group, with its state in .demo/;
2. builds the DAGs of the two reviewed pipeline files in ``pipelines/`` (``router.yaml``, ``replies.yaml``: each its
   own policy and champion) and runs ``gemini_tuning__router`` with `dag.test()` on the good demo set → PROMOTE;
3. runs it again on the same tickets with shuffled labels → expected: DELETE (model and endpoint removed),
   the champion untouched;
4. ``gemini_tuning__replies``: a generative task (short support replies, ``include/demo/replies``) judged by the
   autorater (Vertex's evaluation service; the emulator's stand-in judge): a first champion from 40 examples, then
   the good set → PROMOTE by the pairwise gate (win rates printed), then the corrupted set → DELETE;
5. prints what happened and where the reports are; exits non-zero if anything else happened.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / ".demo"
BUCKET = "gemini-tuning-demo"
PREFIX = f"gs://{BUCKET}/router"     # pipelines/router.yaml's gcs_prefix


def start_emulator() -> tuple[subprocess.Popen, dict]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "emulator", "--port", "0", "--gcs-port", "0", "--data-dir", str(DEMO / "emulator"),
         "--default-bucket", BUCKET, "--time-scale", "0.004", "--log-level", "WARNING"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    return proc, json.loads(proc.stdout.readline())


def fernet_key(home: Path) -> str:
    """The demo's own Fernet key (kept beside its metadata DB), so Airflow stores connection and XCom secrets
    encrypted instead of warning "empty cryptography key" (a deployment sets ``[core] fernet_key`` itself)."""
    path = home / "fernet.key"
    if not path.exists():
        from cryptography.fernet import Fernet

        path.write_bytes(Fernet.generate_key())
        path.chmod(0o600)
    return path.read_text().strip()


def configure(info: dict) -> None:
    home = DEMO / "airflow"
    home.mkdir(parents=True, exist_ok=True)
    os.environ.update({
        "AIRFLOW__CORE__FERNET_KEY": fernet_key(home),
        "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        # Airflow logs "AssetModel … not found; cannot create asset event." the first time a task emits an asset
        # through an AssetAlias (prepare_dataset's training URI, new in every run), then creates the asset and
        # records the event (airflow/models/taskinstance.py, register_asset_changes_in_db). That logger's only
        # other warning is for an inactive asset, which this demo cannot have.
        "AIRFLOW__LOGGING__NAMESPACE_LEVELS": "airflow.assets.manager.AssetManager=error",
        "AIRFLOW__GEMINI_TUNING__INPUT_ROOTS": os.pathsep.join([str(ROOT / "include"), str(DEMO)]),  # + its own files
        "AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT": json.dumps({"conn_type": "google_cloud_platform",
                                                         "extra": {"is_anonymous": True, "project": "demo-project"}}),
        "GEMINI_TUNING_EMULATOR_URL": info["url"], "STORAGE_EMULATOR_HOST": info["gcs_url"], "NO_GCE_CHECK": "true",
    })
    sys.path[:0] = [str(ROOT / "plugins"), str(ROOT / "dags")]
    # Airflow 3.3's DAG-file discovery (airflow/_shared/module_loading/file_discovery.py) still asks pathspec for its
    # old "gitwildmatch" pattern name, and pathspec 1.x warns "GitWildMatchPattern ('gitwildmatch') is deprecated" on
    # every DagBag: Airflow's to change, harmless, nothing a newcomer can act on. Exactly that warning is silenced,
    # after airflow.configuration has put its own "default" filter for airflow's DeprecationWarnings first.
    import airflow.configuration  # noqa: F401

    warnings.filterwarnings("ignore", message=r"GitWildMatchPattern", category=DeprecationWarning)


REPLIES_DIR = ROOT / "include" / "demo" / "replies"


def run(dag, training: Path, label: str, epochs: int = 3) -> dict:
    from airflow.utils.state import DagRunState

    # a run may change only what its pipeline file lets it (the trigger form's fields); dag.test() keeps earlier
    # run_conf keys on the same DAG object, so every key that differs between runs is here
    conf = {"training_data": str(training), "epochs": epochs}
    t0 = time.monotonic()
    dr = dag.test(run_conf=conf)
    took = time.monotonic() - t0
    tis = {ti.task_id: ti for ti in dr.get_task_instances()}
    states = {t: str(ti.state) for t, ti in tis.items()}
    gate = tis["gate"].xcom_pull(task_ids="gate", key="gate") if "gate" in tis else None
    ev = tis["evaluate"].xcom_pull(task_ids="evaluate") if "evaluate" in tis else None
    rep = tis["report"].xcom_pull(task_ids="report") if "report" in tis else None
    print(f"\n=== {label}: run {dr.run_id} -> {dr.state} in {took:.1f}s")
    print("    tasks: " + ", ".join(f"{t}={s}" for t, s in states.items()))
    if ev:
        for model, summ in ev["summary"].items():
            m = summ["metrics"]
            print(f"    {model:10s} normalized_match={m.get('normalized_match')} macro_f1={m.get('macro_f1')} "
                  f"errors={summ['n_errors']}/{summ['n']}")
    judge = (ev or {}).get("judge") or {}
    if judge.get("pairwise"):
        pw = judge["pairwise"]
        rate = "n/a" if pw["win_rate"] is None else f"{pw['win_rate']:.2f}"
        print(f"    judge {judge['model']}: challenger vs champion {pw['wins']} win(s), {pw['losses']} loss(es), "
              f"{pw['ties']} tie(s), {pw['errors']} error(s); win rate {rate} (sign test p = {pw['p_value']:.3g})")
    if judge.get("pointwise"):
        print("    judge score (0-1): " + ", ".join(f"{k}={v:.3f}" for k, v in judge["pointwise"].items()
                                                    if v is not None))
    if gate:
        print(f"    gate: {gate['decision'].upper()} — {gate['summary']}")
    if rep:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        local = DEMO / "reports" / f"{label.replace(' ', '-')}.html"
        local.parent.mkdir(parents=True, exist_ok=True)
        bucket, _, name = rep["report_uri"][len("gs://"):].partition("/")
        storage.Client(credentials=AnonymousCredentials(), project="demo-project").bucket(bucket).blob(name) \
            .download_to_filename(str(local))
        print(f"    report: {rep['report_uri']}\n            local copy: {local}")
    return {"state": dr.state == DagRunState.SUCCESS, "decision": gate and gate["decision"], "states": states,
            "report": rep, "judge": judge}


def main() -> int:
    t0 = time.monotonic()
    shutil.rmtree(DEMO, ignore_errors=True)
    DEMO.mkdir(parents=True)
    emu, info = start_emulator()
    try:
        configure(info)
        subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, cwd=ROOT)
        from airflow.dag_processing.dagbag import DagBag

        bag = DagBag(dag_folder=str(ROOT / "dags"), safe_mode=False)
        if bag.import_errors:
            print(f"DAG import errors: {bag.import_errors}")
            return 1
        print("pipelines: " + ", ".join(sorted(d for d in bag.dags if d.startswith("gemini_tuning__"))))
        dag = bag.dags["gemini_tuning__router"]
        good = run(dag, ROOT / "include" / "demo" / "train.jsonl", "good training set")
        bad = run(dag, ROOT / "include" / "demo" / "train_shuffled.jsonl", "shuffled labels")
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        pointer = json.loads(storage.Client(credentials=AnonymousCredentials(), project="demo-project")
                             .bucket(BUCKET).blob("router/champion.json").download_as_text())
        print(f"\nchampion: {pointer['tuned_model']} (promoted by {pointer['run_id']})")
        ok = (good["state"] and good["decision"] == "promote" and good["states"].get("promote") == "success"
              and bad["state"] and bad["decision"] == "delete" and bad["states"].get("delete") == "success")

        # --- the generative task: a first champion from a few examples, then the good set must beat it in the
        # pairwise judging, the corrupted set must lose to the new champion
        print("\n--- generative task (short support replies), judged by the autorater ---")
        replies = bag.dags["gemini_tuning__replies"]
        first = run(replies, REPLIES_DIR / "train_first_batch.jsonl", "replies first batch", epochs=1)
        better = run(replies, REPLIES_DIR / "train.jsonl", "replies good set", epochs=3)
        worse = run(replies, REPLIES_DIR / "train_corrupted.jsonl", "replies corrupted set", epochs=3)
        gen_ok = (first["decision"] == "promote" and better["decision"] == "promote"
                  and (better["judge"].get("pairwise") or {}).get("wins", 0) > 0
                  and worse["decision"] == "delete" and worse["states"].get("delete") == "success")
        print(f"\n{'OK' if ok else 'UNEXPECTED'}: router: good set promoted={good['decision']}, shuffled set "
              f"deleted={bad['decision']}")
        print(f"{'OK' if gen_ok else 'UNEXPECTED'}: replies: good set promoted by the pairwise gate="
              f"{better['decision']}, corrupted set deleted={worse['decision']}; total {time.monotonic() - t0:.1f}s")
        return 0 if ok and gen_ok else 1
    finally:
        os.killpg(emu.pid, signal.SIGTERM)
        emu.wait(20)


if __name__ == "__main__":
    sys.exit(main())
