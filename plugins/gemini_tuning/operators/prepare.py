"""Step 1 of the pipeline: validate a JSONL training set, convert it for the target, upload it create-only to GCS.

A thin layer: the rules live in ``core.dataset`` (and ``core.promptset``), the reading, staging and uploading in
``services.prepare``.
"""

from __future__ import annotations

from collections import Counter

from airflow.sdk import Asset, AssetAlias

from ..core.dataset import MAX_DECOMPRESSED_BYTES, MAX_LINE_BYTES, DatasetOptions, check_validation_target
from ..core.gcs_uri import split_gs_uri
from .base import GeminiBaseOperator, optional
from .guards import guard_demo_configuration
from .inputs import input_policy


def _by_rule(warnings) -> dict[str, int]:
    """Warnings per rule, counting the core's "N more <rule> warning(s) not listed" summaries as N."""
    counts: Counter = Counter()
    for w in warnings:
        head = w.message.split(" ", 1)[0]
        counts[w.rule] += int(head) if w.line is None and head.isdigit() and "not listed" in w.message else 1
    return dict(counts)


class PrepareTuningDatasetOperator(GeminiBaseOperator):
    """Validates ``source`` (a local path or ``gs://`` object; JSONL, optionally gzip), converts it to the
    ``target`` format ("vertex" or "gemini_api"), optionally splits off or adds a validation set, and uploads the
    result to ``destination`` (``gs://bucket/prefix``) under content-addressed names:
    ``<prefix>/<sha256(train)[:16]>/train.jsonl`` and ``.../validation-<sha256(validation)[:16]>.jsonl``.

    Uploads are create-only: a rerun, a retry or another run with the same data reuses the existing objects
    (``created`` False) and never overwrites; bad data raises ``DataValidationError`` (file:line: [rule] message)
    and leaves no object. Returns a small summary (URIs, digests, counts, stats, warnings) and attaches the
    training object as an Asset event to the ``asset_alias`` outlet.

    :param source: local path or ``gs://`` URI of the JSONL (optionally gzip) training set (templated).
    :param destination: ``gs://bucket/prefix`` to upload to (templated).
    :param target: ``vertex`` or ``gemini_api``: the format and the rules (templated).
    :param validation_source: a separate validation set, validated with the validation rules (Vertex: at most
        5,000 examples, or 30 % of the training examples above 1,000; no minimum) and uploaded beside the training
        set (templated). Exclusive with ``validation_fraction``. Vertex only: the Gemini API takes no validation
        data, so with ``target="gemini_api"`` it fails (``validation-unsupported``) before anything is read.
    :param validation_fraction: split this fraction off the training set, deterministically by content hash
        (templated).
    :param eval_prompts: a prompt set checked for leakage into the training set (templated).
    :param duplicates: ``warn`` | ``fail`` | ``drop`` repeated examples (templated).
    :param unknown_fields: ``warn`` | ``fail`` on fields the format does not define (templated).
    :param leakage: ``off`` | ``warn`` | ``fail`` when a training prompt equals an evaluation prompt (templated).
    :param max_errors: stop collecting errors after this many (templated).
    :param epochs: for the billable-token estimate in the stats (templated).
    :param asset_alias: the AssetAlias outlet that gets an Asset event per training URI; None turns it off.
    :param guard_paths: other paths or URIs of the run (name -> value, e.g. the evaluation's system instruction)
        that the scheduled-run guard checks too; they are not read (templated).
    :param demo_roots: directories holding demo data (besides the repository's ``include/demo``).
    :param max_line_bytes: a longer line of ``source`` / ``validation_source`` / ``eval_prompts`` is the error
        ``line-too-long`` and is never held in memory (default 1 MiB, ``core.dataset.MAX_LINE_BYTES``).
    :param max_decompressed_bytes: a gzip source decompressing to more is the error ``decompressed-too-large``
        (default 4 GiB, ``core.dataset.MAX_DECOMPRESSED_BYTES``).

    Allowed inputs: ``source``, ``validation_source`` and ``eval_prompts`` are read only from a local path under
    the input roots (setting ``[gemini_tuning] input_roots``; default the deployment's ``include/`` folder) or a
    ``gs://`` object in the destination's bucket or a bucket of ``[gemini_tuning] allowed_buckets``
    (``operators.inputs``); anything else fails with ``core.inputs.InputNotAllowed`` before anything is read.
    The prompt set is read only up to 256 MiB (``backends.gcs.ObjectTooLarge``).

    Scheduled-run guard: before anything is read or uploaded, an unattended run (not ``manual``) against Google's
    real services whose ``source``, ``destination``, ``validation_source``, ``eval_prompts`` or ``guard_paths`` point
    at demo data or the demo bucket fails (``AirflowFailException``) with what to configure; a manual one logs a
    loud warning (``core.safety``).

    And the connection arguments of :class:`~gemini_tuning.operators.base.GeminiBaseOperator` (only GCS is used).
    """

    template_fields = ("source", "destination", "target", "validation_source", "validation_fraction", "eval_prompts",
                       "duplicates", "unknown_fields", "leakage", "max_errors", "epochs", "gcp_conn_id",
                       "impersonation_chain", "guard_paths")
    ui_color = "#e3f2e1"

    def __init__(self, *, source: str, destination: str, target: str = "vertex", validation_source: str | None = None,
                 validation_fraction: float | str = 0.0, eval_prompts: str | None = None, duplicates: str = "warn",
                 unknown_fields: str = "warn", leakage: str = "warn", max_errors: int | str = 50,
                 epochs: int | str = 1, asset_alias: str | None = "gemini-tuning-training-data",
                 guard_paths: dict | None = None, demo_roots: list[str] | tuple[str, ...] = (),
                 max_line_bytes: int = MAX_LINE_BYTES, max_decompressed_bytes: int = MAX_DECOMPRESSED_BYTES,
                 **kwargs):
        if asset_alias:
            outlets = list(kwargs.pop("outlets", None) or [])
            kwargs["outlets"] = outlets + [AssetAlias(asset_alias)]
        super().__init__(**kwargs)
        self.source = source
        self.destination = destination
        self.target = target
        self.validation_source = validation_source
        self.validation_fraction = validation_fraction
        self.eval_prompts = eval_prompts
        self.duplicates = duplicates
        self.unknown_fields = unknown_fields
        self.leakage = leakage
        self.max_errors = max_errors
        self.epochs = epochs
        self.asset_alias = asset_alias
        self.guard_paths = guard_paths or {}
        self.demo_roots = tuple(demo_roots)
        self.max_line_bytes = int(max_line_bytes)
        self.max_decompressed_bytes = int(max_decompressed_bytes)

    def _limits(self):
        from ..services.prepare import LineLimits

        return LineLimits(self.max_line_bytes, self.max_decompressed_bytes)

    def execute(self, context):
        guard_demo_configuration(self, context, {
            "source": self.source, "destination": self.destination, "validation_source": self.validation_source,
            "eval_prompts": self.eval_prompts, **dict(self.guard_paths or {})}, self.demo_roots)
        options = DatasetOptions(target=self.target, validation_fraction=float(optional(self.validation_fraction) or 0),
                                 duplicates=self.duplicates, unknown_fields=self.unknown_fields, leakage=self.leakage,
                                 max_errors=int(self.max_errors), epochs=int(self.epochs))
        validation_source = optional(self.validation_source)
        if validation_source and options.validation_fraction:
            raise ValueError("give either validation_source or validation_fraction, not both")
        if validation_source:  # the Gemini API takes no validation data: say so before anything is read
            check_validation_target(options, validation_source)
        split_gs_uri(self.destination)      # a bad destination fails first (ValueError), before any input check
        from ..services.prepare import prepare_and_upload, read_leakage_prompts

        # every input is checked before anything is read or uploaded: local paths under the input roots, gs://
        # objects in the destination's bucket or an allowed one (core.inputs); the resolved location is read
        policy = input_policy([self.destination])
        source = policy.check(self.source, "source")
        validation_location = policy.check(validation_source, "validation_source") if validation_source else None
        eval_location = policy.check(self.eval_prompts, "eval_prompts") if optional(self.eval_prompts) else None
        client = self.hook.storage()
        evals = None
        if eval_location and options.leakage != "off":
            evals = read_leakage_prompts(client, eval_location, source_name=self.eval_prompts, limits=self._limits())
            self.log.info("leakage check (%s) against %d prompts of %s", options.leakage, len(evals), self.eval_prompts)
        done = prepare_and_upload(client, self.destination, source=(source, self.source), options=options,
                                  limits=self._limits(), eval_prompts=evals, logger=self.log,
                                  validation_source=(validation_location, validation_source) if validation_source
                                  else None)
        res, train, val = done.result, done.train, done.validation
        val_sha, val_count, warnings = done.validation_sha256, done.validation_count, done.warnings

        ex_tokens = res.stats.get("roles", {}).get("example", {}).get("tokens", {})
        self.log.info("formats %s; %d train + %d validation examples, %d duplicates dropped; tokens per example "
                      "(estimate) median %s, p95 %s, max %s; billable tokens %s (%s epochs)", res.formats,
                      res.train_count, val_count, res.dropped_duplicates, ex_tokens.get("median"),
                      ex_tokens.get("p95"), ex_tokens.get("max"), res.stats.get("billable_tokens"), options.epochs)
        by_rule = _by_rule(warnings)
        if warnings:
            self.log.warning("%d warning(s) %s; first ones:\n%s", sum(by_rule.values()), by_rule,
                             "\n".join(map(str, warnings[:20])))
        for up in filter(None, (train, val)):
            self.log.info("%s %s (generation %s, %s bytes)", "uploaded" if up.created else "reused existing",
                          up.uri, up.generation, f"{up.bytes:,}")
        summary = {"train_uri": train.uri, "validation_uri": val.uri if val else None,
                   "train_lines_uri": done.lines_uri,
                   "train_sha256": res.train_sha256, "validation_sha256": val_sha if val else None,
                   "train_count": res.train_count, "validation_count": val_count,
                   "dropped_duplicates": res.dropped_duplicates,
                   "created": {"train": train.created, "validation": val.created if val else None},
                   "stats": res.stats,
                   "warnings": {"count": sum(by_rule.values()), "by_rule": by_rule,
                                "first": [str(w) for w in warnings[:20]]},
                   "formats": dict(res.formats), "target": options.target}
        if self.asset_alias:
            context["outlet_events"][AssetAlias(self.asset_alias)].add(
                Asset(name=train.uri, uri=train.uri),
                extra={k: summary[k] for k in ("train_sha256", "train_count", "validation_uri", "validation_count",
                                               "target")})
        return summary
