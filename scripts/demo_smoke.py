"""Offline smoke flow: emulator process → upload the demo set to GCS → tune with google-genai → evaluate.

Run through ``scripts/demo.sh``. Exits non-zero if any step fails or the tuned model does not beat the base model.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "include" / "demo"
os.environ["NO_GCE_CHECK"] = "true"


def main() -> int:
    emu = subprocess.Popen([sys.executable, "-m", "emulator", "--port", "0", "--gcs-port", "0", "--time-scale", "0.004",
                            "--log-level", "WARNING"], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                           start_new_session=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        info = json.loads(emu.stdout.readline())
        print(f"emulator: {info['url']}  gcs: {info['gcs_url']}")
        os.environ["STORAGE_EMULATOR_HOST"] = info["gcs_url"]
        import google.oauth2.credentials
        from google import genai
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage
        from google.genai import types

        gcs = storage.Client(credentials=AnonymousCredentials(), project="demo-project")
        blob = gcs.bucket("gemini-tuning-demo").blob("smoke/train.jsonl")
        blob.upload_from_filename(str(DEMO / "train.jsonl"))
        print(f"uploaded gs://gemini-tuning-demo/{blob.name} ({blob.size} bytes)")
        client = genai.Client(vertexai=True, project="demo-project", location="us-central1",
                              credentials=google.oauth2.credentials.Credentials(token="offline"),
                              http_options=types.HttpOptions(base_url=info["url"]))
        job = client.tunings.tune(base_model="gemini-2.5-flash",
                                  training_dataset=types.TuningDataset(gcs_uri=f"gs://gemini-tuning-demo/{blob.name}"),
                                  config=types.CreateTuningJobConfig(epoch_count=3, tuned_model_display_name="smoke"))
        print(f"tuning job: {job.name}")
        while not job.has_ended:
            time.sleep(0.5)
            job = client.tunings.get(name=job.name)
            print(f"  {job.state.name}")
        if job.state != types.JobState.JOB_STATE_SUCCEEDED:
            print(f"FAILED: {job.error}")
            return 1
        system = (DEMO / "system_instruction.txt").read_text().strip()
        prompts = [json.loads(x) for x in (DEMO / "eval_prompts.jsonl").read_text().splitlines() if x.strip()]
        cfg = types.GenerateContentConfig(temperature=0, system_instruction=system)
        scores = {}
        for label, model in (("tuned", job.tuned_model.endpoint), ("base", "gemini-2.5-flash")):
            hits = sum(client.models.generate_content(model=model, contents=p["prompt"], config=cfg).text.strip()
                       == p["reference"] for p in prompts)
            scores[label] = hits / len(prompts)
            print(f"{label:5s} accuracy on {len(prompts)} held-out prompts: {scores[label]:.3f}")
        return 0 if scores["tuned"] > scores["base"] else 1
    finally:
        os.killpg(emu.pid, signal.SIGTERM)
        emu.wait(15)


if __name__ == "__main__":
    sys.exit(main())
