"""Vertex AI's evaluation service: ``POST /{v1|v1beta1}/projects/P/locations/L:evaluateInstances``
(``google.cloud.aiplatform.{v1,v1beta1}.EvaluationService.EvaluateInstances``).

Built from the pinned protos (google-cloud-aiplatform 2.7.0, ``types/evaluation_service.py``). Field names below are
the JSON names; requests may use either spelling (``common.json_body``), responses are camelCase.

Request: exactly ONE member of the ``metric_inputs`` oneof. Implemented:

- ``exactMatchInput {metricSpec {}, instances [{prediction, reference}]}``
  -> ``exactMatchResults {exactMatchMetricValues [{score}]}``
- ``bleuInput {metricSpec {useEffectiveOrder}, instances [{prediction, reference}]}``
  -> ``bleuResults {bleuMetricValues [{score}]}``
- ``rougeInput {metricSpec {rougeType, useStemmer, splitSummaries}, instances [{prediction, reference}]}``
  -> ``rougeResults {rougeMetricValues [{score}]}``
- ``pointwiseMetricInput {metricSpec {metricPromptTemplate, systemInstruction?, customOutputFormatConfig?
  {returnRawOutput}}, instance {jsonInstance}}`` -> ``pointwiseMetricResult {score, explanation}``
  (with ``returnRawOutput``: ``pointwiseMetricResult {customOutput {rawOutputs {rawOutput [text]}}}``)
- ``pairwiseMetricInput {metricSpec {metricPromptTemplate, candidateResponseFieldName?,
  baselineResponseFieldName?, systemInstruction?, customOutputFormatConfig?}, instance {jsonInstance}}``
  -> ``pairwiseMetricResult {pairwiseChoice: BASELINE|CANDIDATE|TIE, explanation}`` (or ``customOutput``)

``autoraterConfig {samplingCount, flipEnabled, autoraterModel, generationConfig}`` is a top-level request field of
**v1beta1 only**: the pinned v1 ``EvaluateInstancesRequest`` has no such field (v1's request is the oneof plus
``location``), so on v1 it is refused like Google's front end refuses any unknown field ("Invalid JSON payload
received. Unknown name ..."). Unknown fields are refused at every level of the implemented messages (except inside
``generationConfig`` and ``contentMapInstance``, which are not inspected). The other oneof members (fluency,
groundedness, tool-call, COMET, trajectory... inputs) and v1beta1's new-style ``metrics``/``metricSources``/
``instance`` are valid for Google but not implemented here: 501 UNIMPLEMENTED, so a gap is never mistaken for a
validation error. ``contentMapInstance`` (multimodal) likewise.

Validation (400 INVALID_ARGUMENT with a ``google.rpc.BadRequest`` field violation unless said otherwise;
[unverified] Google's exact wording everywhere): no metric input, or more than one; missing ``metricSpec`` /
``instances`` (empty) / an instance's ``prediction`` or ``reference``; an unsupported ``rougeType`` (``rouge1``..
``rouge9``, ``rougeL``, ``rougeLsum``; an empty one too [unverified]: the proto calls it optional without a
default); a missing or empty ``metricPromptTemplate``; no ``instance.jsonInstance``; a ``jsonInstance`` that is not
valid JSON or not a JSON object; a template ``{placeholder}`` (the Vertex SDK's ``PromptTemplate`` regex,
``{[_a-zA-Z][_a-zA-Z0-9]*}``) that is not a key of ``jsonInstance`` (extra keys are fine); ``samplingCount``
outside [1, 32] (the proto's range); an autorater model that is not ``gemini-*``,
``[projects/P/locations/L/]publishers/google/models/gemini-*`` or ``projects/P/locations/L/endpoints/E`` (400;
a well-formed publisher model that is not Gemini, or an endpoint that does not exist: 404 NOT_FOUND).

Computation metrics:

- exact match: 1.0 when ``prediction == reference`` as strings, else 0.0. No normalisation (the proto: "returns 1
  if prediction and reference exactly matches, otherwise 0"; [unverified] whether Google trims whitespace).
- BLEU: sentence BLEU-4 the way sacrebleu computes it (``use_effective_order`` is sacrebleu's parameter name):
  13a tokenisation, case-sensitive, "exp" smoothing (an n-gram order with no match counts
  ``1 / (2^k x total)``), brevity penalty, scaled to [0, 1] (the proto: "a score ranging between 0 to 1").
  Without ``useEffectiveOrder`` an answer shorter than 4 tokens scores 0 (its missing 4-grams); with it, only the
  orders the answer has are averaged. The Vertex SDK documents BLEU as "based on sacrebleu implementation"
  (``vertexai.language_models``); [unverified] these exact settings.
- ROUGE: ``rouge_score.rouge_scorer`` ([unverified] that the service uses it) with ``rougeType`` and ``useStemmer``; the
  score is the F-measure. ``splitSummaries`` (rougeLsum only) splits sentences with a regex after ``.!?`` instead
  of nltk's punkt (its data is not installed offline) [unverified: the same sentences as punkt].

**The judge is a deterministic stand-in, not a model** (on Google the autorater is an LLM reading the rendered
template; ``systemInstruction``, ``generationConfig`` and the autorater model's identity change nothing here, and an
endpoint as autorater is not called). It reads ``jsonInstance`` directly and scores an answer by its **closeness to
the reference**: ROUGE-L F1 of the lower-cased words (``\\w+``, Unicode) of the answer against
``jsonInstance["reference"]``; the prompt is ignored. So a better answer really scores higher, and a pipeline can
tell a real improvement from noise.

- pointwise: ``score = 1 + round_half_up(4 x closeness)``, a whole number on a 1-5 rubric (closeness >= 0.875 ->
  5, >= 0.625 -> 4, >= 0.375 -> 3, >= 0.125 -> 2, else 1). Always 1-5, whatever scale the template mentions
  (the template is not parsed for a scale). The explanation says what was compared ("Closeness to the reference:
  ...").
- pairwise: the candidate is ``jsonInstance[candidateResponseFieldName or "response"]``, the baseline
  ``jsonInstance[baselineResponseFieldName or "baseline_model_response"]`` (the Vertex SDK's column names; its
  default pairwise templates show the baseline as "Response A", first). ``CANDIDATE`` when the candidate's
  closeness exceeds the baseline's by more than ``TIE_EPS`` (0.02), ``BASELINE`` the other way round. Otherwise
  the two are equally close, a tie, and:

  * **position bias** (the default): the judge prefers the answer presented **first** - the one whose
    ``{placeholder}`` comes first in the template, the baseline when the template names neither (or only the
    baseline first, as the SDK's templates do). Judging twice with the order swapped therefore yields an
    inconsistent pair on ties (BASELINE both times = a different winner each time), which a caller's
    order-swapped check must see as position bias, not as a win. Decided answers are position-consistent by
    construction (closeness does not depend on the order).
  * ``TIE`` when flipping is in effect: ``autoraterConfig.flipEnabled`` (v1beta1; the proto's default is true,
    so unset counts as true) AND both ``candidateResponseFieldName`` and ``baselineResponseFieldName`` are set
    (the proto: "If enabled, also provide ..."; without them the service cannot know which fields to flip). The
    flipped half of the samples prefers the other answer, so the aggregate is a tie. [unverified] how Google's
    autorater breaks ties and aggregates flipped samples; ``samplingCount`` only is range-checked (every sample of
    a deterministic judge agrees).
- without a ``reference`` (absent or blank) in ``jsonInstance`` the stand-in cannot judge: 400 INVALID_ARGUMENT
  marked "[emulator limitation]" (Google's model would judge the prompt; a made-up score would look like signal).
  Likewise when the answer(s) to judge are absent from ``jsonInstance``.

No latency of its own; ``POST /_emulator/faults`` rules (status 429/503, reset, latency, stall) match
``:evaluateInstances`` paths like any other.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections import Counter

from .common import json_body, ok
from .errors import ApiError, invalid_argument, not_found

P = r"/(?P<ver>v1|v1beta1)/projects/(?P<project>[^/]+)/locations/(?P<location>[^/:]+)"

# The metric_inputs oneof of the pinned EvaluateInstancesRequest (tests check these lists against the protos).
IMPLEMENTED = ("exactMatchInput", "bleuInput", "rougeInput", "pointwiseMetricInput", "pairwiseMetricInput")
NOT_IMPLEMENTED_V1 = (
    "fluencyInput", "coherenceInput", "safetyInput", "groundednessInput", "fulfillmentInput",
    "summarizationQualityInput", "pairwiseSummarizationQualityInput", "summarizationHelpfulnessInput",
    "summarizationVerbosityInput", "questionAnsweringQualityInput", "pairwiseQuestionAnsweringQualityInput",
    "questionAnsweringRelevanceInput", "questionAnsweringHelpfulnessInput", "questionAnsweringCorrectnessInput",
    "toolCallValidInput", "toolNameMatchInput", "toolParameterKeyMatchInput", "toolParameterKvMatchInput",
    "cometInput", "metricxInput")
NOT_IMPLEMENTED_V1BETA1_ONLY = (
    "trajectoryExactMatchInput", "trajectoryInOrderMatchInput", "trajectoryAnyOrderMatchInput",
    "trajectoryPrecisionInput", "trajectoryRecallInput", "trajectorySingleToolUseInput",
    "rubricBasedInstructionFollowingInput")
METRIC_INPUTS = {"v1": IMPLEMENTED + NOT_IMPLEMENTED_V1,
                 "v1beta1": IMPLEMENTED + NOT_IMPLEMENTED_V1 + NOT_IMPLEMENTED_V1BETA1_ONLY}
# The request's other fields (outside the oneof).
OTHER_FIELDS = {"v1": ("location",), "v1beta1": ("location", "metrics", "metricSources", "instance", "autoraterConfig")}
NEW_STYLE_V1BETA1 = ("metrics", "metricSources", "instance")

# What the implemented messages may contain (JSON names). None: a scalar; _ANY: not inspected; [m]: repeated m.
_ANY = object()
_INSTANCE = {"prediction": None, "reference": None}
_CUSTOM_OUTPUT = {"returnRawOutput": None}
_MODEL_INSTANCE = {"jsonInstance": None, "contentMapInstance": _ANY}
SCHEMA = {
    "exactMatchInput": {"metricSpec": {}, "instances": [_INSTANCE]},
    "bleuInput": {"metricSpec": {"useEffectiveOrder": None}, "instances": [_INSTANCE]},
    "rougeInput": {"metricSpec": {"rougeType": None, "useStemmer": None, "splitSummaries": None},
                   "instances": [_INSTANCE]},
    "pointwiseMetricInput": {"metricSpec": {"metricPromptTemplate": None, "systemInstruction": None,
                                            "customOutputFormatConfig": _CUSTOM_OUTPUT},
                             "instance": _MODEL_INSTANCE},
    "pairwiseMetricInput": {"metricSpec": {"metricPromptTemplate": None, "candidateResponseFieldName": None,
                                           "baselineResponseFieldName": None, "systemInstruction": None,
                                           "customOutputFormatConfig": _CUSTOM_OUTPUT},
                            "instance": _MODEL_INSTANCE},
    "autoraterConfig": {"samplingCount": None, "flipEnabled": None, "autoraterModel": None, "generationConfig": _ANY},
}

PLACEHOLDER = re.compile(r"\{([_a-zA-Z][_a-zA-Z0-9]*)\}")   # vertexai.evaluation.prompt_template
ROUGE_TYPES = re.compile(r"^rouge([1-9]|L|Lsum)$")
TIE_EPS = 0.02
DEFAULT_JUDGE = "gemini-2.5-flash"   # [unverified] Google's default autorater model
RESPONSE_KEY = CANDIDATE_KEY = "response"          # the Vertex SDK's column names
BASELINE_KEY, REFERENCE_KEY = "baseline_model_response", "reference"
_PUBLISHER = re.compile(r"^(?:projects/[^/]+/locations/[^/]+/)?publishers/(?P<pub>[^/]+)/models/(?P<model>[^/@]+)$")
_ENDPOINT = re.compile(r"^projects/[^/]+/locations/[^/]+/endpoints/[^/]+$")
_GEMINI = re.compile(r"^gemini-[\w.-]+$")


def _snake(path: str) -> str:
    """A JSON-name path as Google's messages spell it (proto names): ``pointwiseMetricInput.metricSpec`` ->
    ``pointwise_metric_input.metric_spec``."""
    return re.sub(r"[A-Z]", lambda m: "_" + m.group(0).lower(), path)


def _unknown(name: str, at: str = "") -> ApiError:
    where = f" at '{_snake(at)}'" if at else ""
    message = f'Invalid JSON payload received. Unknown name "{name}"{where}: Cannot find field.'
    return ApiError(400, message, details=[{"@type": "type.googleapis.com/google.rpc.BadRequest",
                                            "fieldViolations": [{"field": _snake(at), "description": message}]}])


def _bad_value(at: str, value, what: str) -> ApiError:
    return invalid_argument(_snake(at), f"Invalid value at '{_snake(at)}' ({what}), {json.dumps(value)[:200]}")


def _check_fields(value, schema, at: str) -> None:
    """Refuses unknown field names (and a list or scalar where a message belongs, and the reverse)."""
    if schema is None or schema is _ANY or value is None:
        return
    if isinstance(schema, list):
        if not isinstance(value, list):
            raise _bad_value(at, value, "a repeated field: a JSON array")
        for i, item in enumerate(value):
            _check_fields(item, schema[0], f"{at}[{i}]")
        return
    if not isinstance(value, dict):
        raise _bad_value(at, value, "a message: a JSON object")
    for key, item in value.items():
        if key not in schema:
            raise _unknown(key, at)
        _check_fields(item, schema[key], f"{at}.{key}")


def _string(obj: dict, key: str, at: str, *, required: bool = False) -> str | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise invalid_argument(_snake(f"{at}.{key}"), f"{_snake(key)} is required.")
        return None
    if not isinstance(value, str):
        raise _bad_value(f"{at}.{key}", value, "TYPE_STRING")
    return value


def _bool(obj: dict, key: str, at: str) -> bool | None:
    value = obj.get(key)
    if value is None or isinstance(value, bool):
        return value
    raise _bad_value(f"{at}.{key}", value, "TYPE_BOOL")


# ------------------------------------------------------------------------------------------------ computation
def exact_match(prediction: str, reference: str) -> float:
    return 1.0 if prediction == reference else 0.0


_13A = [(re.compile(r"([\{-\~\[-\` -\&\(-\+\:-\@\/])"), r" \1 "),   # punctuation
        (re.compile(r"([^0-9])([\.,])"), r"\1 \2 "),                  # period and comma unless preceded by a digit
        (re.compile(r"([\.,])([^0-9])"), r" \1 \2"),                  # ... unless followed by a digit
        (re.compile(r"([0-9])(-)"), r"\1 \2 ")]                       # dash after a digit


def tokenize_13a(line: str) -> list[str]:
    """sacrebleu's default tokenizer (mteval-v13a)."""
    line = line.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    if "&" in line:
        line = line.replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
    line = f" {line} "
    for rx, repl in _13A:
        line = rx.sub(repl, line)
    return line.split()


def bleu(prediction: str, reference: str, effective_order: bool, max_order: int = 4) -> float:
    """Sentence BLEU in [0, 1], as sacrebleu's ``BLEU.compute_bleu`` with "exp" smoothing."""
    hyp, ref = tokenize_13a(prediction), tokenize_13a(reference)
    precisions = [0.0] * max_order
    eff_order, smooth = max_order, 1.0
    for n in range(1, max_order + 1):
        total = max(0, len(hyp) - n + 1)
        if total == 0:
            break
        if effective_order:
            eff_order = n
        hyp_ngrams = Counter(tuple(hyp[i:i + n]) for i in range(total))
        ref_ngrams = Counter(tuple(ref[i:i + n]) for i in range(max(0, len(ref) - n + 1)))
        correct = sum(min(c, ref_ngrams[g]) for g, c in hyp_ngrams.items())
        if correct == 0:
            smooth *= 2
            precisions[n - 1] = 1.0 / (smooth * total)
        else:
            precisions[n - 1] = correct / total
    if not hyp or any(p == 0.0 for p in precisions[:eff_order]):
        return 0.0
    bp = 1.0 if len(hyp) >= len(ref) else math.exp(1 - len(ref) / len(hyp))
    return bp * math.exp(sum(math.log(p) for p in precisions[:eff_order]) / eff_order)


@functools.lru_cache(maxsize=64)
def _rouge_scorer(rouge_type: str, use_stemmer: bool):
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer([rouge_type], use_stemmer=use_stemmer)


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def rouge(prediction: str, reference: str, rouge_type: str, use_stemmer: bool, split_summaries: bool) -> float:
    if rouge_type == "rougeLsum" and split_summaries:   # rougeLsum reads one sentence per line
        prediction, reference = ("\n".join(_SENTENCE_END.split(t.strip())) for t in (prediction, reference))
    return float(_rouge_scorer(rouge_type, use_stemmer).score(reference, prediction)[rouge_type].fmeasure)


# ------------------------------------------------------------------------------------------------ the judge
_WORD = re.compile(r"\w+")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _lcs(a: list[str], b: list[str]) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, 1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def closeness(answer: str, reference: str) -> float:
    """The stand-in judge's measure, in [0, 1]: ROUGE-L F1 of the lower-cased words of ``answer`` against
    ``reference`` (a reference with no words: 1.0 for the same text, else 0.0)."""
    a, r = _words(answer), _words(reference)
    if not r:
        return 1.0 if answer.strip() == reference.strip() else 0.0
    lcs = _lcs(a, r) if a else 0
    if lcs == 0:
        return 0.0
    p, q = lcs / len(a), lcs / len(r)
    return 2 * p * q / (p + q)


def pointwise_score(c: float) -> float:
    """closeness -> the 1-5 rubric: 1 + 4c rounded half up."""
    return float(1 + math.floor(4 * c + 0.5))


def judge_pointwise(response: str, reference: str) -> tuple[float, str]:
    c = closeness(response, reference)
    score = pointwise_score(c)
    return score, (f"Closeness to the reference: ROUGE-L F1 of the words {c:.3f}, so a score of {score:.0f} on "
                   f"1-5 (1 + 4 x closeness, rounded). The prompt was not considered (the emulator's stand-in "
                   f"judge compares the response with the reference only).")


def judge_pairwise(candidate: str, baseline: str, reference: str, *, candidate_first: bool,
                   flipped: bool) -> tuple[str, str]:
    cand, base = closeness(candidate, reference), closeness(baseline, reference)
    head = (f"Closeness to the reference (ROUGE-L F1 of the words): candidate {cand:.3f}, baseline {base:.3f}; "
            f"difference {cand - base:+.3f}, a tie within {TIE_EPS}. ")
    if cand > base + TIE_EPS:
        return "CANDIDATE", head + "The candidate is closer to the reference."
    if base > cand + TIE_EPS:
        return "BASELINE", head + "The baseline is closer to the reference."
    if flipped:
        return "TIE", head + ("Equally close; judged in both orders (flip_enabled), the orders disagree, so "
                              "neither wins.")
    first = "CANDIDATE" if candidate_first else "BASELINE"
    return first, head + (f"Equally close; the judge prefers the answer presented first, the {first.lower()} "
                          "(the emulator judge's documented position bias on ties).")


# ------------------------------------------------------------------------------------------------ the service
class EvaluationService:
    def __init__(self, emu):
        self.emu = emu
        emu.router.add("POST", P + r":evaluateInstances", self.evaluate_instances)

    async def evaluate_instances(self, request, ver, project, location):
        body = await json_body(request)
        known = set(METRIC_INPUTS[ver]) | set(OTHER_FIELDS[ver])
        for key in body:
            if key not in known:
                raise _unknown(key)
        given = [k for k in METRIC_INPUTS[ver] if body.get(k) is not None]
        if not given and any(body.get(k) is not None for k in NEW_STYLE_V1BETA1):
            raise ApiError(501, "EvaluateInstancesRequest.metrics / metric_sources / instance are not implemented "
                                "by the emulator; set one metric input (e.g. pointwise_metric_input).",
                           status="UNIMPLEMENTED")
        if len(given) != 1:
            raise invalid_argument("metric_inputs", "Exactly one metric input must be set"
                                   + (f", got {len(given)}: {', '.join(_snake(g) for g in given)}." if given
                                      else ", got none."))
        kind = given[0]
        if kind not in IMPLEMENTED:
            raise ApiError(501, f"{_snake(kind)} is not implemented by the emulator (implemented: "
                                f"{', '.join(_snake(k) for k in IMPLEMENTED)}).", status="UNIMPLEMENTED")
        _check_fields(body[kind], SCHEMA[kind], kind)
        autorater = body.get("autoraterConfig")
        _check_fields(autorater, SCHEMA["autoraterConfig"], "autoraterConfig")
        flip_enabled = self._check_autorater(autorater or {}, project, location)
        if kind in ("exactMatchInput", "bleuInput", "rougeInput"):
            return ok(self._computation(kind, body[kind]))
        return ok(self._model_based(kind, body[kind], flip_enabled))

    def _check_autorater(self, cfg: dict, project: str, location: str) -> bool:
        at = "autoraterConfig"
        count = cfg.get("samplingCount")
        if count is not None:
            try:
                n = int(count)   # proto3 JSON: an int32 as a number or a numeric string
                if isinstance(count, bool) or (isinstance(count, float) and not count.is_integer()):
                    raise ValueError
            except (TypeError, ValueError):
                raise _bad_value(f"{at}.samplingCount", count, "TYPE_INT32") from None
            if not 1 <= n <= 32:
                raise invalid_argument("autorater_config.sampling_count",
                                       f"sampling_count must be between 1 and 32, got {n}.")
        flip = _bool(cfg, "flipEnabled", at)
        model = _string(cfg, "autoraterModel", at) or DEFAULT_JUDGE
        m = _PUBLISHER.match(model)
        if _GEMINI.match(model) or (m and m["pub"] == "google" and _GEMINI.match(m["model"])):
            pass
        elif m:
            raise ApiError(404, f"Publisher Model `projects/{project}/locations/{location}/publishers/{m['pub']}/"
                                f"models/{m['model']}` was not found or your project does not have access to it.")
        elif _ENDPOINT.match(model):
            if self.emu.store.get("endpoints", model) is None:
                raise not_found(model)
        else:
            raise invalid_argument("autorater_config.autorater_model",
                                   f"Autorater model {model!r} is not supported: use a Gemini publisher model "
                                   "(publishers/google/models/gemini-..., or projects/P/locations/L/publishers/"
                                   "google/models/gemini-...) or a tuned autorater's endpoint "
                                   "(projects/P/locations/L/endpoints/E).")
        return True if flip is None else flip   # the proto: "Default is true"

    def _computation(self, kind: str, spec_in: dict) -> dict:
        spec = spec_in.get("metricSpec")
        if spec is None:
            raise invalid_argument(_snake(f"{kind}.metricSpec"), "metric_spec is required.")
        instances = spec_in.get("instances") or []
        if not instances:
            raise invalid_argument(_snake(f"{kind}.instances"), "instances is required (at least one instance).")
        pairs = []
        for i, inst in enumerate(instances):
            at = f"{kind}.instances[{i}]"
            if inst is None:
                raise invalid_argument(_snake(at), "an instance is required.")
            pairs.append((_string(inst, "prediction", at, required=True), _string(inst, "reference", at,
                                                                                 required=True)))
        if kind == "exactMatchInput":
            return {"exactMatchResults": {"exactMatchMetricValues": [
                {"score": exact_match(p, r)} for p, r in pairs]}}
        if kind == "bleuInput":
            effective = bool(_bool(spec, "useEffectiveOrder", f"{kind}.metricSpec"))
            return {"bleuResults": {"bleuMetricValues": [{"score": bleu(p, r, effective)} for p, r in pairs]}}
        at = f"{kind}.metricSpec"
        rouge_type = _string(spec, "rougeType", at) or ""
        if not ROUGE_TYPES.match(rouge_type):
            raise invalid_argument("rouge_input.metric_spec.rouge_type",
                                   f"Unsupported rouge_type {rouge_type!r}: supported rouge types are "
                                   "rougen[1-9], rougeL and rougeLsum.")
        stem, split = bool(_bool(spec, "useStemmer", at)), bool(_bool(spec, "splitSummaries", at))
        return {"rougeResults": {"rougeMetricValues": [
            {"score": rouge(p, r, rouge_type, stem, split)} for p, r in pairs]}}

    def _model_based(self, kind: str, spec_in: dict, flip_enabled: bool) -> dict:
        spec = spec_in.get("metricSpec")
        if spec is None:
            raise invalid_argument(_snake(f"{kind}.metricSpec"), "metric_spec is required.")
        at = f"{kind}.metricSpec"
        template = _string(spec, "metricPromptTemplate", at, required=True)
        if not template.strip():
            raise invalid_argument(_snake(f"{at}.metricPromptTemplate"), "metric_prompt_template is required.")
        _string(spec, "systemInstruction", at)
        raw_output = bool(_bool(spec.get("customOutputFormatConfig") or {}, "returnRawOutput",
                                f"{at}.customOutputFormatConfig"))
        instance = spec_in.get("instance")
        if instance is None:
            raise invalid_argument(_snake(f"{kind}.instance"), "instance is required.")
        if instance.get("contentMapInstance") is not None and instance.get("jsonInstance") is None:
            raise ApiError(501, f"{_snake(kind)}.instance.content_map_instance (multimodal) is not implemented by "
                                "the emulator; use json_instance.", status="UNIMPLEMENTED")
        jat = f"{kind}.instance.jsonInstance"
        raw = _string(instance, "jsonInstance", f"{kind}.instance", required=True)
        try:
            values = json.loads(raw)
        except ValueError as exc:
            raise invalid_argument(_snake(jat), f"json_instance is not valid JSON: {exc}.") from None
        if not isinstance(values, dict):
            raise invalid_argument(_snake(jat), "json_instance must be a JSON object of placeholder names to "
                                                "values.")
        values = {k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}
        missing = sorted(set(PLACEHOLDER.findall(template)) - set(values))
        if missing:
            raise invalid_argument(_snake(jat), f"The metric prompt template's placeholder(s) "
                                                f"{', '.join('{' + m + '}' for m in missing)} are not in "
                                                "json_instance.")
        reference = values.get(REFERENCE_KEY)
        if reference is None or not reference.strip():
            raise invalid_argument(_snake(jat), "[emulator limitation] The emulator's stand-in judge scores "
                                                "closeness to a 'reference' and json_instance has none (Google's "
                                                "autorater would judge without one).")

        def answer(key: str) -> str:
            if key not in values:
                raise invalid_argument(_snake(jat), f"[emulator limitation] json_instance has no {key!r}: the "
                                                    "emulator's stand-in judge reads the answer from it.")
            return values[key]

        if kind == "pointwiseMetricInput":
            score, explanation = judge_pointwise(answer(RESPONSE_KEY), reference)
            result = {"score": score, "explanation": explanation}
            if raw_output:
                result = {"customOutput": {"rawOutputs": {"rawOutput": [f"{explanation}\nscore: {score:g}"]}}}
            return {"pointwiseMetricResult": result}
        cand_name = _string(spec, "candidateResponseFieldName", at) or ""
        base_name = _string(spec, "baselineResponseFieldName", at) or ""
        cand_key, base_key = cand_name or CANDIDATE_KEY, base_name or BASELINE_KEY
        pos_c, pos_b = template.find("{" + cand_key + "}"), template.find("{" + base_key + "}")
        candidate_first = pos_c >= 0 and (pos_b < 0 or pos_c < pos_b)
        choice, explanation = judge_pairwise(answer(cand_key), answer(base_key), reference,
                                             candidate_first=candidate_first,
                                             flipped=flip_enabled and bool(cand_name) and bool(base_name))
        result = {"pairwiseChoice": choice, "explanation": explanation}
        if raw_output:
            result = {"customOutput": {"rawOutputs": {"rawOutput": [f"{explanation}\npairwise_choice: {choice}"]}}}
        return {"pairwiseMetricResult": result}
