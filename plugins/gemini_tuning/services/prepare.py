"""Step 1's storage work, free of Airflow: read a training set (and a validation set) from a checked location,
validate and convert it (``core.dataset``) while it is uploaded in parts, and publish the result create-only under
content-addressed names; and read the prompts a leakage check compares against.

The operator (``operators.prepare``) keeps what is Airflow's: the scheduled-run guard, the input policy from the
settings (every location given here has been checked by it), the summary it returns and the Asset event.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from dataclasses import dataclass, replace

from ..backends import gcs
from ..core.dataset import (
    DatasetOptions,
    iter_lines,
    line_ranges,
    prepare_dataset,
    prepare_validation_dataset,
    source_lines,
)
from ..core.promptset import parse_prompt_set
from .eval_results import MAX_PROMPT_SET_BYTES

__all__ = ["LineLimits", "Prepared", "prepare_and_upload", "prepare_file", "read_leakage_prompts"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LineLimits:
    """How lines are read (``core.dataset.iter_lines``): the longest line and the largest decompressed stream.

    :param max_line_bytes: the longest line, in bytes; a longer one is reported (``line-too-long``), not read.
    :param max_decompressed_bytes: the most bytes a gzip input may decompress to (``DecompressedTooLarge`` above).
    """

    max_line_bytes: int
    max_decompressed_bytes: int

    def lines(self, fh, *, cap: int | None = None):
        """The lines of ``fh`` under these bounds (``cap``: a lower decompressed bound for this read)."""
        return iter_lines(fh, max_line_bytes=self.max_line_bytes,
                          max_decompressed_bytes=min(self.max_decompressed_bytes, cap or self.max_decompressed_bytes))


@dataclass(frozen=True)
class Prepared:
    """What :func:`prepare_and_upload` produced: the training set's result (``core.dataset``), the uploads
    (``backends.gcs.UploadResult``; ``validation`` None without validation examples), the validation set's digest
    and count (split off or separate), and every warning.

    :param result: the training file's ``core.dataset.PrepareResult`` (counts, digests, stats).
    :param train: the training set's upload (``UploadResult``), at ``<destination>/<sha256[:16]>/train.jsonl``.
    :param validation: the validation set's upload; None without validation examples.
    :param validation_sha256: SHA-256 of the validation bytes; None when nothing was split off or given.
    :param validation_count: validation examples (0: none).
    :param warnings: the warning-severity issues of the training file and of a separate validation file.
    :param lines_uri: the line map (:func:`write_line_map`): each training example's line in the source file.
    """

    result: object
    train: object
    validation: object | None
    validation_sha256: str | None
    validation_count: int
    warnings: list
    lines_uri: str | None = None


def write_line_map(client, train_uri: str, source_name: str, train_lines) -> str:
    """Write ``{"source", "train_uri", "ranges"}`` beside ``train_uri``: the source line of each training example
    (``core.dataset.line_ranges``), so that the examples Vertex reports as dropped (1-based indices into the
    written file) can be named by the user's own lines. Named by its content's hash: two runs whose training
    files are the same bytes from different sources keep a map each.

    :param client: a ``google.cloud.storage.Client``.
    :param train_uri: the uploaded training file.
    :param source_name: the source file as the user named it.
    :param train_lines: ``PrepareResult.train_lines``.
    :returns: the map's ``gs://`` URI.
    """
    body = json.dumps({"source": source_name, "train_uri": train_uri, "ranges": line_ranges(train_lines)},
                      separators=(",", ":")).encode()
    uri = f"{train_uri.rsplit('/', 1)[0]}/lines-{hashlib.sha256(body).hexdigest()[:16]}.json"
    gcs.write_bytes(client, uri, body, "application/json")
    return uri


def read_line_map(client, uri: str | None, indices) -> dict:
    """``{"source", "lines": {index: source line or None}}`` of the 1-based ``indices`` from the map at ``uri``;
    ``{}`` without a map (a run prepared before maps existed, or none given)."""
    if not uri or uri == "None":
        return {}
    obj, _ = gcs.read_json(client, uri, max_bytes=64 << 20, what="a training line map")
    if obj is None:
        return {}
    return {"source": obj.get("source"), "lines": source_lines(obj.get("ranges") or [], indices)}


def read_leakage_prompts(client, location: str, *, source_name: str, limits: LineLimits) -> list[str]:
    """The prompts of the prompt set at ``location`` (read up to ``eval_results.MAX_PROMPT_SET_BYTES``,
    ``backends.gcs.ObjectTooLarge`` above), for the leakage check.

    :param client: a ``google.cloud.storage.Client`` (unused for a local path).
    :param location: the checked location (a resolved local path or a ``gs://`` URI).
    :param source_name: how errors name it (the value as given).
    :param limits: the line bounds.
    """
    with gcs.open_source(location, client, max_bytes=MAX_PROMPT_SET_BYTES, what="a prompt set") as fh:
        return [p.prompt for p in parse_prompt_set(limits.lines(fh, cap=MAX_PROMPT_SET_BYTES),
                                                    source_name=source_name)]


def prepare_file(client, location: str, options: DatasetOptions, *, limits: LineLimits, train=None, validation=None,
                 eval_prompts=None, name: str | None = None, train_count: int | None = None,
                 logger: logging.Logger | None = None):
    """Validate and convert one file, writing the examples to the sinks.

    :param location: the checked location to read; ``name``: how the issues name it (the value as given).
    :param train_count: None for the training set; for a separate validation set the number of training examples
        it goes with (it is then validated with the validation rules and written to ``validation``).
    :param logger: where progress goes (the task's log).
    """
    logger = logger or log
    name = name or location
    role = "training" if train_count is None else "validation"
    logger.info("validating %s (%s) for %s (%s)", name, role, options.target, options)
    progress = gcs.ProgressLog(f"read {name}", logger=logger)
    with gcs.open_source(location, client) as raw:
        counted = gcs.CountingReader(raw, progress)
        if train_count is None:
            result = prepare_dataset(limits.lines(counted), source_name=name, options=options, train_sink=train,
                                     validation_sink=validation, eval_prompts=eval_prompts)
        else:
            result = prepare_validation_dataset(limits.lines(counted), source_name=name, options=options,
                                                validation_sink=validation, train_count=train_count)
    progress(counted.count, final=True)
    return result


def prepare_and_upload(client, destination: str, *, source: tuple[str, str], options: DatasetOptions,
                       limits: LineLimits, validation_source: tuple[str, str] | None = None, eval_prompts=None,
                       logger: logging.Logger | None = None) -> Prepared:
    """Validate, convert and upload: ``<destination>/<sha256(train)[:16]>/train.jsonl`` and, with validation
    examples, ``.../validation-<sha256(validation)[:16]>.jsonl``, create-only (an existing object of the same
    content is reused). Parts are staged under ``<destination>/_staging/<random>`` and deleted on every exit: bad
    data (``core.dataset.DataValidationError``) leaves no object.

    :param destination: ``gs://bucket/prefix``.
    :param source: ``(checked location, name as given)`` of the training set.
    :param validation_source: the same of a separate validation set, or None (``options.validation_fraction``
        splits one off instead).
    :param eval_prompts: the prompts of the leakage check (:func:`read_leakage_prompts`), or None.
    """
    logger = logger or log
    bucket, prefix = gcs.parse_gs_uri(destination)
    prefix = prefix.strip("/")

    def path(*parts):
        return gcs.gs_uri(bucket, "/".join(p for p in (prefix, *parts) if p))

    staging = path("_staging", uuid.uuid4().hex)  # parts uploaded while validating; deleted on every exit
    progress = gcs.ProgressLog("uploaded train.jsonl", logger=logger)
    with gcs.StagedUpload(client, f"{staging}/train.jsonl", progress=progress) as t_up, \
            gcs.StagedUpload(client, f"{staging}/validation.jsonl") as v_up:
        split = v_up if options.validation_fraction else None
        res = prepare_file(client, source[0], options, limits=limits, train=t_up, validation=split,
                           eval_prompts=eval_prompts, name=source[1], logger=logger)
        val_sha, val_count, warnings = res.validation_sha256, res.validation_count, list(res.warnings)
        if validation_source:
            vres = prepare_file(client, validation_source[0], replace(options, leakage="off"), limits=limits,
                                validation=v_up, name=validation_source[1], train_count=res.train_count,
                                logger=logger)
            val_sha, val_count = vres.validation_sha256, vres.validation_count
            warnings += list(vres.warnings)
        key = res.train_sha256[:16]
        train = t_up.finish(path(key, "train.jsonl"), sha256=res.train_sha256)
        val = v_up.finish(path(key, f"validation-{val_sha[:16]}.jsonl"), sha256=val_sha) if val_count else None
    lines_uri = write_line_map(client, train.uri, source[1], res.train_lines)
    return Prepared(res, train, val, val_sha, val_count, warnings, lines_uri)
