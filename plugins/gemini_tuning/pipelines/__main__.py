"""``python -m gemini_tuning.pipelines check FOLDER [FOLDER…] [--json]``: validate pipeline files before review.

Prints every error (``file:line: field: rule``, the messages of :func:`~.loader.load_folder`) and a summary line
(``N pipelines OK, M files with errors``); ``--json`` prints ``{"pipelines": [...], "errors": [...]}`` instead.
Exit status 1 when any file has an error, else 0. No network, no Airflow.
"""

from __future__ import annotations

import argparse
import json
import sys

from .loader import load_folder


def main(argv: list[str] | None = None) -> int:
    """Run the command line.

    :param argv: the arguments (default: ``sys.argv[1:]``).
    :return: the exit status (0: every file loaded; 1: at least one has an error; 2: usage error).
    """
    parser = argparse.ArgumentParser(prog="python -m gemini_tuning.pipelines",
                                     description="Validate pipeline files (pipelines/<id>.yaml).")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="validate every *.yaml / *.yml file of the folders")
    check.add_argument("folders", nargs="+", metavar="FOLDER")
    check.add_argument("--json", action="store_true", help="print a machine-readable result")
    args = parser.parse_args(argv)

    pipelines, errors = [], []
    for folder in args.folders:
        result = load_folder(folder)
        pipelines.extend(result.pipelines)
        errors.extend(result.errors)
    if args.json:
        print(json.dumps({
            "pipelines": [{"id": p.spec.id, "file": p.file, "dag_id": p.dag_id, "revision": p.revision,
                           "policy_hash": p.policy_hash} for p in pipelines],
            "errors": [e.to_dict() for file_error in errors for e in file_error.errors],
        }, indent=2))
    else:
        for file_error in errors:
            for error in file_error.errors:
                print(error)
        print(f"{len(pipelines)} pipelines OK, {len(errors)} files with errors")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
