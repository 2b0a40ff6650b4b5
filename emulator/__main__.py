"""``python -m emulator``: the offline Vertex AI + Gemini API + GCS stand-in, bound to 127.0.0.1 only.

Prints the base URLs and the environment variables to export, then serves until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading

from .app import EmulatorConfig
from .server import EmulatorServer, load_faults


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m emulator", description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=8089, help="Vertex AI + Gemini API port (0 = any free port)")
    p.add_argument("--gcs-port", type=int, default=9023, help="GCS emulator port (0 = any free port)")
    p.add_argument("--data-dir", default=None, help="keep state here (survives restarts); default: in memory")
    p.add_argument("--default-bucket", default="gemini-tuning-demo")
    p.add_argument("--time-scale", type=float, default=EmulatorConfig.time_scale,
                   help="multiplies the nominal job durations (1.0 = realistic; 0.01 = a ~30 min job takes ~20 s)")
    p.add_argument("--faults", default=None, help="fault rules: inline JSON or @file.json (see emulator/faults.py)")
    p.add_argument("--gemini-api-tuning-discontinued", action="store_true",
                   help="answer tunedModels.create as Google does since 2025")
    p.add_argument("--env-file", default=None, help="also write the export lines to this file")
    p.add_argument("--log-level", default="INFO")
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    config = EmulatorConfig(time_scale=args.time_scale,
                            gemini_api_tuning_discontinued=args.gemini_api_tuning_discontinued)
    data_dir = os.path.abspath(args.data_dir) if args.data_dir else None
    server = EmulatorServer(port=args.port, gcs_port=args.gcs_port, data_dir=data_dir, config=config,
                            default_bucket=args.default_bucket, faults=load_faults(args.faults))
    endpoints = server.start()
    lines = [f"export {k}={v}" for k, v in endpoints.env().items()]
    print(json.dumps({"url": endpoints.url, "gcs_url": endpoints.gcs_url, "data_dir": data_dir}), flush=True)
    print("\n".join(lines), flush=True)
    if args.env_file:
        with open(args.env_file, "w") as f:
            f.write("\n".join(lines) + "\n")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
