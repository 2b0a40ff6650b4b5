"""The emulator's evaluation service (``:evaluateInstances``) through the official GAPIC clients, raw REST and the
plugin's backend: computation metrics, the stand-in judge (pointwise and pairwise, with its position bias on ties),
Google's error envelopes, faults."""

from __future__ import annotations

import asyncio
import json

import pytest
import requests
from google.protobuf import json_format
from test_strict_protos import check_error_envelope, strict_parse

from emulator import evaluation
from harness.clients import LOCATION, PROJECT, gapic_kwargs

pytestmark = pytest.mark.fast

PARENT = f"projects/{PROJECT}/locations/{LOCATION}"
REF = "We are sorry your order arrived late. A refund is on its way and should reach you within five days."
GOOD = "We are sorry your order arrived late. A refund is on its way and should reach you within 5 days."
GOOD2 = "We are sorry your order arrived delayed. A refund is on its way and should reach you within five days."
BAD = "Thanks for reaching out. Could you share a few more details?"
POINTWISE = "Rate {response} against {reference} for {prompt} from 1 to 5."
PAIRWISE = "Which is better for {prompt}: A {baseline_model_response} or B {response}? Reference: {reference}"
CANDIDATE_FIRST = "Which is better for {prompt}: A {response} or B {baseline_model_response}? Reference: {reference}"


@pytest.fixture
def client(emulator):
    from google.cloud import aiplatform_v1

    return aiplatform_v1.EvaluationServiceClient(**gapic_kwargs(emulator.endpoints.url))


@pytest.fixture
def beta_client(emulator):
    from google.cloud import aiplatform_v1beta1

    return aiplatform_v1beta1.EvaluationServiceClient(**gapic_kwargs(emulator.endpoints.url))


def _post(emulator, body, ver="v1"):
    return requests.post(f"{emulator.endpoints.url}/{ver}/{PARENT}:evaluateInstances", json=body, timeout=10)


def _pointwise(client, response, reference=REF, template=POINTWISE):
    from google.cloud import aiplatform_v1 as v

    return client.evaluate_instances(request=v.EvaluateInstancesRequest(
        location=PARENT, pointwise_metric_input=v.PointwiseMetricInput(
            metric_spec=v.PointwiseMetricSpec(metric_prompt_template=template),
            instance=v.PointwiseMetricInstance(json_instance=json.dumps(
                {"prompt": "late order", "response": response, "reference": reference}))))).pointwise_metric_result


def _pairwise(client, candidate, baseline, template=PAIRWISE, **spec):
    from google.cloud import aiplatform_v1 as v

    return client.evaluate_instances(request=v.EvaluateInstancesRequest(
        location=PARENT, pairwise_metric_input=v.PairwiseMetricInput(
            metric_spec=v.PairwiseMetricSpec(metric_prompt_template=template, **spec),
            instance=v.PairwiseMetricInstance(json_instance=json.dumps(
                {"prompt": "late order", "response": candidate, "baseline_model_response": baseline,
                 "reference": REF}))))).pairwise_metric_result


# ------------------------------------------------------------------------------------------------ the contract
@pytest.mark.parametrize("ver", ["v1", "v1beta1"])
def test_the_emulators_field_lists_are_the_pinned_protos(ver):
    from google.cloud import aiplatform_v1, aiplatform_v1beta1

    desc = {"v1": aiplatform_v1, "v1beta1": aiplatform_v1beta1}[ver].EvaluateInstancesRequest.pb().DESCRIPTOR
    oneof = [f.json_name for f in desc.oneofs_by_name["metric_inputs"].fields]
    assert sorted(oneof) == sorted(evaluation.METRIC_INPUTS[ver])
    assert sorted(f.json_name for f in desc.fields if f.containing_oneof is None) == sorted(
        evaluation.OTHER_FIELDS[ver])
    for name, schema in evaluation.SCHEMA.items():
        msg = desc.fields_by_camelcase_name[name].message_type if name in desc.fields_by_camelcase_name else None
        if msg is None:
            assert name == "autoraterConfig" and ver == "v1"   # not a v1 request field
            continue
        _same_fields(msg, schema, name)


def _same_fields(msg, schema, at):
    if not isinstance(schema, dict):
        return
    assert sorted(f.json_name for f in msg.fields) == sorted(schema), at
    for f in msg.fields:
        sub = schema[f.json_name]
        _same_fields(f.message_type, sub[0] if isinstance(sub, list) else sub, f"{at}.{f.json_name}")


# ------------------------------------------------------------------------------------------------ the judge
def test_official_client_pointwise(client):
    good, bad = _pointwise(client, GOOD), _pointwise(client, BAD)
    assert 1 <= bad.score < good.score <= 5
    assert _pointwise(client, REF).score == 5.0 and good.score in (4.0, 5.0) and bad.score == 1.0
    assert good.explanation.startswith("Closeness to the reference") and "prompt was not considered" in \
        good.explanation
    # the prompt is ignored; the template's scale is not parsed (always 1-5)
    assert _pointwise(client, REF, template="{prompt} {response} {reference} on a scale of 1 to 10").score == 5.0


def test_official_client_pairwise_picks_the_closer_answer(client):
    from google.cloud import aiplatform_v1 as v

    win = _pairwise(client, GOOD, BAD)
    assert win.pairwise_choice == v.PairwiseChoice.CANDIDATE and "candidate is closer" in win.explanation
    assert _pairwise(client, BAD, GOOD).pairwise_choice == v.PairwiseChoice.BASELINE
    # decided answers do not depend on where they are shown
    assert _pairwise(client, GOOD, BAD, template=CANDIDATE_FIRST).pairwise_choice == v.PairwiseChoice.CANDIDATE


def test_a_tie_goes_to_the_first_presented_answer_so_swapping_flips_the_winner(client):
    from google.cloud import aiplatform_v1 as v

    assert evaluation.closeness(GOOD, REF) == evaluation.closeness(GOOD2, REF) < 1.0
    first = _pairwise(client, GOOD, GOOD2)       # GOOD2 shown first (baseline, "A")
    swapped = _pairwise(client, GOOD2, GOOD)     # GOOD shown first
    assert first.pairwise_choice == swapped.pairwise_choice == v.PairwiseChoice.BASELINE   # a different winner
    assert "presented first" in first.explanation and "position bias" in first.explanation
    # the first-presented answer is the one whose placeholder comes first in the template
    assert _pairwise(client, GOOD, GOOD2, template=CANDIDATE_FIRST).pairwise_choice == v.PairwiseChoice.CANDIDATE
    # identical answers are a tie too
    assert _pairwise(client, GOOD, GOOD).pairwise_choice == v.PairwiseChoice.BASELINE


def test_flipping_turns_a_tie_into_TIE(client, beta_client):
    from google.cloud import aiplatform_v1 as v
    from google.cloud import aiplatform_v1beta1 as b

    names = dict(candidate_response_field_name="response", baseline_response_field_name="baseline_model_response")
    # v1 has no autoraterConfig: flip_enabled keeps the proto's default (true), in effect once both names are given
    tie = _pairwise(client, GOOD, GOOD2, **names)
    assert tie.pairwise_choice == v.PairwiseChoice.TIE and "flip_enabled" in tie.explanation
    assert _pairwise(client, GOOD, BAD, **names).pairwise_choice == v.PairwiseChoice.CANDIDATE

    def beta(flip, **spec):
        return beta_client.evaluate_instances(request=b.EvaluateInstancesRequest(
            location=PARENT, autorater_config=b.AutoraterConfig(
                autorater_model="publishers/google/models/gemini-2.5-flash", flip_enabled=flip, sampling_count=4,
                generation_config=b.GenerationConfig(temperature=0.0)),
            pairwise_metric_input=b.PairwiseMetricInput(
                metric_spec=b.PairwiseMetricSpec(metric_prompt_template=PAIRWISE, **spec),
                instance=b.PairwiseMetricInstance(json_instance=json.dumps(
                    {"prompt": "p", "response": GOOD, "baseline_model_response": GOOD2, "reference": REF}))))
        ).pairwise_metric_result.pairwise_choice

    assert beta(True, **names) == b.PairwiseChoice.TIE
    assert beta(False, **names) == b.PairwiseChoice.BASELINE     # flipping off: the position bias shows
    assert beta(True) == b.PairwiseChoice.BASELINE               # no field names: nothing to flip


def test_custom_field_names_choose_what_is_judged(emulator):
    body = {"pairwiseMetricInput": {
        "metricSpec": {"metricPromptTemplate": "{ours} vs {theirs} ({reference})", "candidateResponseFieldName": "ours",
                       "baselineResponseFieldName": "theirs"},
        "instance": {"jsonInstance": json.dumps({"ours": GOOD, "theirs": BAD, "reference": REF})}}}
    r = _post(emulator, body)
    assert r.status_code == 200, r.text
    assert r.json()["pairwiseMetricResult"]["pairwiseChoice"] == "CANDIDATE"


def test_the_v1beta1_client_with_an_autorater_config(beta_client):
    from google.cloud import aiplatform_v1beta1 as b

    res = beta_client.evaluate_instances(request=b.EvaluateInstancesRequest(
        location=PARENT, autorater_config=b.AutoraterConfig(autorater_model="gemini-2.5-flash", sampling_count=1),
        pointwise_metric_input=b.PointwiseMetricInput(
            metric_spec=b.PointwiseMetricSpec(metric_prompt_template=POINTWISE, system_instruction="Be strict."),
            instance=b.PointwiseMetricInstance(json_instance=json.dumps(
                {"prompt": "p", "response": GOOD, "reference": REF, "extra": 3})))))
    assert res.pointwise_metric_result.score >= 4


# ------------------------------------------------------------------------------------------------ computation
def test_official_client_exact_match_has_no_normalisation(client):
    from google.cloud import aiplatform_v1 as v

    pairs = [(REF, REF), (BAD, REF), (REF + " ", REF), (REF.lower(), REF), ("", "")]
    em = client.evaluate_instances(request=v.EvaluateInstancesRequest(
        location=PARENT, exact_match_input=v.ExactMatchInput(
            metric_spec=v.ExactMatchSpec(),
            instances=[v.ExactMatchInstance(prediction=p, reference=r) for p, r in pairs])))
    assert [m.score for m in em.exact_match_results.exact_match_metric_values] == [1.0, 0.0, 0.0, 0.0, 1.0]


def test_official_client_rouge(client):
    from google.cloud import aiplatform_v1 as v

    def score(prediction, reference=REF, **spec):
        res = client.evaluate_instances(request=v.EvaluateInstancesRequest(
            location=PARENT, rouge_input=v.RougeInput(metric_spec=v.RougeSpec(**spec), instances=[
                v.RougeInstance(prediction=prediction, reference=reference)])))
        return res.rouge_results.rouge_metric_values[0].score

    for rouge_type in ("rouge1", "rouge2", "rougeL", "rougeLsum", "rouge9"):
        assert score(REF, rouge_type=rouge_type) == pytest.approx(1.0)
        assert 0.0 <= score(BAD, rouge_type=rouge_type) < score(GOOD, rouge_type=rouge_type) < 1.0
    assert score("cats running", "cat runs", rouge_type="rouge1") == 0.0
    assert score("cats running", "cat runs", rouge_type="rouge1", use_stemmer=True) == pytest.approx(1.0)
    # rougeLsum reads sentences per line; split_summaries splits them first
    two = "The parcel left today. It arrives on Monday."
    swapped = "It arrives on Monday. The parcel left today."
    assert score(swapped, two, rouge_type="rougeLsum", split_summaries=True) == pytest.approx(1.0)
    assert score(swapped, two, rouge_type="rougeLsum") < 1.0


def test_official_client_bleu(client):
    from google.cloud import aiplatform_v1 as v

    def scores(pairs, effective):
        res = client.evaluate_instances(request=v.EvaluateInstancesRequest(
            location=PARENT, bleu_input=v.BleuInput(
                metric_spec=v.BleuSpec(use_effective_order=effective),
                instances=[v.BleuInstance(prediction=p, reference=r) for p, r in pairs])))
        return [m.score for m in res.bleu_results.bleu_metric_values]

    perfect, good, bad = scores([(REF, REF), (GOOD, REF), (BAD, REF)], False)
    assert perfect == pytest.approx(1.0) and perfect > good > 0.5 > bad >= 0.0
    # a three-token answer has no 4-grams: 0 unless only the orders it has count
    assert scores([("refund is on", "refund is on")], False) == [0.0]
    assert scores([("refund is on", "refund is on")], True) == [pytest.approx(1.0)]


# ------------------------------------------------------------------------------------------------ wire format
BODIES = {
    "pointwise": {"pointwiseMetricInput": {"metricSpec": {"metricPromptTemplate": POINTWISE}, "instance": {
        "jsonInstance": json.dumps({"prompt": "p", "response": GOOD, "reference": REF})}}},
    "pointwise.raw": {"pointwiseMetricInput": {
        "metricSpec": {"metricPromptTemplate": POINTWISE, "customOutputFormatConfig": {"returnRawOutput": True}},
        "instance": {"jsonInstance": json.dumps({"prompt": "p", "response": GOOD, "reference": REF})}}},
    "pairwise": {"pairwiseMetricInput": {"metricSpec": {"metricPromptTemplate": PAIRWISE}, "instance": {
        "jsonInstance": json.dumps({"prompt": "p", "response": GOOD, "baseline_model_response": BAD,
                                    "reference": REF})}}},
    "pairwise.raw": {"pairwiseMetricInput": {
        "metricSpec": {"metricPromptTemplate": PAIRWISE, "customOutputFormatConfig": {"returnRawOutput": True}},
        "instance": {"jsonInstance": json.dumps({"prompt": "p", "response": GOOD, "baseline_model_response": BAD,
                                                 "reference": REF})}}},
    "exactMatch": {"exactMatchInput": {"metricSpec": {}, "instances": [{"prediction": GOOD, "reference": REF}]}},
    "bleu": {"bleuInput": {"metricSpec": {"useEffectiveOrder": True},
                           "instances": [{"prediction": GOOD, "reference": REF}]}},
    "rouge": {"rougeInput": {"metricSpec": {"rougeType": "rougeLsum", "useStemmer": True, "splitSummaries": True},
                             "instances": [{"prediction": GOOD, "reference": REF}]}},
}
RESULT_KEY = {"pointwise": "pointwiseMetricResult", "pairwise": "pairwiseMetricResult",
              "exactMatch": "exactMatchResults", "bleu": "bleuResults", "rouge": "rougeResults"}


@pytest.mark.parametrize("ver", ["v1", "v1beta1"])
@pytest.mark.parametrize("kind", sorted(BODIES))
def test_responses_parse_strictly(emulator, kind, ver):
    from google.cloud import aiplatform_v1, aiplatform_v1beta1

    message = {"v1": aiplatform_v1, "v1beta1": aiplatform_v1beta1}[ver].EvaluateInstancesResponse.pb()
    r = _post(emulator, BODIES[kind], ver)
    assert r.status_code == 200, r.text
    json_format.Parse(r.text, message(), ignore_unknown_fields=False)
    strict_parse(r.text, message)            # and camelCase names only
    body = r.json()
    assert list(body) == [RESULT_KEY[kind.split(".")[0]]]
    if kind.endswith(".raw"):
        result = next(iter(body.values()))
        assert list(result) == ["customOutput"] and result["customOutput"]["rawOutputs"]["rawOutput"][0]


def _snake_keys(obj):
    if isinstance(obj, dict):
        return {evaluation._snake(k): (v if k == "jsonInstance" else _snake_keys(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_snake_keys(v) for v in obj]
    return obj


@pytest.mark.parametrize("kind", sorted(BODIES))
def test_snake_case_bodies_are_accepted(emulator, kind):
    camel = _post(emulator, BODIES[kind], "v1beta1")
    body = _snake_keys({**BODIES[kind], "autoraterConfig": {"autoraterModel": "publishers/google/models/gemini-2.5-pro",
                                                            "flipEnabled": False, "samplingCount": "2"}})
    assert "autorater_config" in body and "metric_spec" in next(iter(body.values()))
    snake = _post(emulator, body, "v1beta1")
    assert snake.status_code == camel.status_code == 200, snake.text
    assert snake.json() == camel.json()


# ------------------------------------------------------------------------------------------------ errors
def _pw(template="{prompt} {response} {reference}", instance=None, raw=None, **extra):
    inst = {"jsonInstance": raw if raw is not None else json.dumps(
        instance if instance is not None else {"prompt": "p", "response": "r", "reference": "r"})}
    return {"pointwiseMetricInput": {"metricSpec": {"metricPromptTemplate": template}, "instance": inst}, **extra}


EM = {"exactMatchInput": {"metricSpec": {}, "instances": [{"prediction": "a", "reference": "a"}]}}
BAD_REQUESTS = [
    # (id, version, body, HTTP status, status, text in the message, the field violation's field or None)
    ("no-input", "v1", {}, 400, "INVALID_ARGUMENT", "Exactly one metric input", "metric_inputs"),
    ("null-input", "v1", {"exactMatchInput": None}, 400, "INVALID_ARGUMENT", "got none", "metric_inputs"),
    ("two-inputs", "v1", {**EM, "rougeInput": {"metricSpec": {"rougeType": "rouge1"},
                                               "instances": [{"prediction": "a", "reference": "a"}]}},
     400, "INVALID_ARGUMENT", "Exactly one metric input", "metric_inputs"),
    ("placeholder-missing", "v1", _pw("{prompt} {missing} {other}"), 400, "INVALID_ARGUMENT",
     "{missing}, {other} are not in json_instance", "pointwise_metric_input.instance.json_instance"),
    ("not-json", "v1", _pw(raw="{not json"), 400, "INVALID_ARGUMENT", "not valid JSON",
     "pointwise_metric_input.instance.json_instance"),
    ("not-an-object", "v1", _pw(raw="[1, 2]"), 400, "INVALID_ARGUMENT", "must be a JSON object",
     "pointwise_metric_input.instance.json_instance"),
    ("no-template", "v1", {"pointwiseMetricInput": {"metricSpec": {}, "instance": {"jsonInstance": "{}"}}},
     400, "INVALID_ARGUMENT", "metric_prompt_template is required",
     "pointwise_metric_input.metric_spec.metric_prompt_template"),
    ("no-json-instance", "v1", {"pairwiseMetricInput": {"metricSpec": {"metricPromptTemplate": "x"},
                                                        "instance": {}}},
     400, "INVALID_ARGUMENT", "json_instance is required", "pairwise_metric_input.instance.json_instance"),
    ("no-reference", "v1", _pw("{prompt} {response}", {"prompt": "p", "response": "r"}), 400, "INVALID_ARGUMENT",
     "[emulator limitation]", "pointwise_metric_input.instance.json_instance"),
    ("pairwise-no-baseline", "v1", {"pairwiseMetricInput": {
        "metricSpec": {"metricPromptTemplate": "{response}"},
        "instance": {"jsonInstance": json.dumps({"response": "a", "reference": "b"})}}},
     400, "INVALID_ARGUMENT", "'baseline_model_response'", "pairwise_metric_input.instance.json_instance"),
    ("v1-has-no-autorater-config", "v1", _pw(autoraterConfig={"autoraterModel": "gemini-2.5-flash"}), 400,
     "INVALID_ARGUMENT", 'Unknown name "autoraterConfig"', ""),
    ("unknown-nested-field", "v1", {"exactMatchInput": {"metricSpec": {"normalize": True},
                                                        "instances": [{"prediction": "a", "reference": "a"}]}},
     400, "INVALID_ARGUMENT", "Unknown name \"normalize\" at 'exact_match_input.metric_spec'",
     "exact_match_input.metric_spec"),
    ("bad-autorater", "v1beta1", _pw(autoraterConfig={"autoraterModel": "openai/gpt"}), 400, "INVALID_ARGUMENT",
     "not supported", "autorater_config.autorater_model"),
    ("not-a-gemini-autorater", "v1beta1", _pw(autoraterConfig={"autoraterModel": "publishers/google/models/imagen-9"}),
     404, "NOT_FOUND", "Publisher Model", None),
    ("missing-endpoint", "v1beta1",
     _pw(autoraterConfig={"autoraterModel": f"{PARENT}/endpoints/123456789"}), 404, "NOT_FOUND", "was not found",
     None),
    ("sampling-count", "v1beta1", _pw(autoraterConfig={"samplingCount": 33}), 400, "INVALID_ARGUMENT",
     "between 1 and 32", "autorater_config.sampling_count"),
    ("flip-not-bool", "v1beta1", _pw(autoraterConfig={"flipEnabled": "yes"}), 400, "INVALID_ARGUMENT",
     "TYPE_BOOL", "autorater_config.flip_enabled"),
    ("rouge-type", "v1", {"rougeInput": {"metricSpec": {"rougeType": "rougeX"},
                                         "instances": [{"prediction": "a", "reference": "a"}]}},
     400, "INVALID_ARGUMENT", "rougeX", "rouge_input.metric_spec.rouge_type"),
    ("no-instances", "v1", {"bleuInput": {"metricSpec": {}, "instances": []}}, 400, "INVALID_ARGUMENT",
     "instances is required", "bleu_input.instances"),
    ("no-prediction", "v1", {"exactMatchInput": {"metricSpec": {}, "instances": [{"reference": "a"}]}}, 400,
     "INVALID_ARGUMENT", "prediction is required", "exact_match_input.instances[0].prediction"),
    ("no-metric-spec", "v1", {"rougeInput": {"instances": [{"prediction": "a", "reference": "a"}]}}, 400,
     "INVALID_ARGUMENT", "metric_spec is required", "rouge_input.metric_spec"),
    ("not-implemented-input", "v1", {"fluencyInput": {"metricSpec": {}, "instance": {"prediction": "x"}}}, 501,
     "UNIMPLEMENTED", "fluency_input is not implemented", None),
    ("v1beta1-only-input-on-v1", "v1", {"trajectoryExactMatchInput": {}}, 400, "INVALID_ARGUMENT",
     'Unknown name "trajectoryExactMatchInput"', ""),
    ("content-map", "v1", {"pointwiseMetricInput": {"metricSpec": {"metricPromptTemplate": "x"},
                                                    "instance": {"contentMapInstance": {"values": {}}}}},
     501, "UNIMPLEMENTED", "content_map_instance", None),
]


@pytest.mark.parametrize("ver, body, code, status, needle, field",
                         [c[1:] for c in BAD_REQUESTS], ids=[c[0] for c in BAD_REQUESTS])
def test_bad_requests_get_googles_envelope(emulator, ver, body, code, status, needle, field):
    r = _post(emulator, body, ver)
    assert r.status_code == code, r.text
    check_error_envelope(r.status_code, r.text)
    err = r.json()["error"]
    assert err["status"] == status and needle in err["message"], r.text
    if field is not None:
        (detail,) = err["details"]
        assert detail["@type"] == "type.googleapis.com/google.rpc.BadRequest"
        assert detail["fieldViolations"][0]["field"] == field, detail


def test_the_official_client_raises_googles_exceptions(client):
    from google.api_core import exceptions
    from google.cloud import aiplatform_v1 as v

    with pytest.raises(exceptions.BadRequest, match="placeholder"):
        _pointwise(client, GOOD, template="{prompt} {nowhere}")
    with pytest.raises(exceptions.BadRequest, match="Exactly one metric input"):
        client.evaluate_instances(request=v.EvaluateInstancesRequest(location=PARENT))


def test_an_existing_endpoint_is_accepted_as_the_autorater(emulator):
    name = f"{PARENT}/endpoints/987654321"
    emulator.emulator.store.put("endpoints", name, {"name": name, "deployedModels": []})
    try:
        r = _post(emulator, _pw(autoraterConfig={"autoraterModel": name}), "v1beta1")
        assert r.status_code == 200 and r.json()["pointwiseMetricResult"]["score"] == 5.0, r.text
    finally:
        emulator.emulator.store.delete("endpoints", name)


def test_faults_apply_to_evaluate_instances(emulator, client):
    from google.api_core import exceptions

    url = emulator.endpoints.url
    requests.post(f"{url}/_emulator/faults", json=[
        {"kind": "status", "path": ":evaluateInstances$", "status": 429, "retry_after": 2, "count": 1},
        {"kind": "status", "path": ":evaluateInstances$", "status": 503, "count": 1}], timeout=10).raise_for_status()
    r = _post(emulator, BODIES["pointwise"])
    assert r.status_code == 429 and r.headers["Retry-After"] == "2"
    check_error_envelope(r.status_code, r.text)
    with pytest.raises(exceptions.ServiceUnavailable):
        _pointwise(client, GOOD)
    assert _pointwise(client, GOOD).score >= 4       # the rules are used up


# ------------------------------------------------------------------------------------------------ the plugin
def test_the_plugins_backend_judges_through_v1beta1_with_the_judge_model(emulator):
    import google.oauth2.credentials

    from gemini_tuning.backends.vertex_evaluation import (
        DEFAULT_PAIRWISE_TEMPLATE,
        DEFAULT_POINTWISE_TEMPLATE,
        VertexEvaluationBackend,
    )

    backend = VertexEvaluationBackend(project=PROJECT, location=LOCATION, base_url=emulator.endpoints.url,
                                      credentials=google.oauth2.credentials.Credentials(token="t"))

    async def go():
        try:
            p = await backend.apointwise(DEFAULT_POINTWISE_TEMPLATE, {"prompt": "q", "response": GOOD,
                                                                      "reference": REF}, "gemini-2.5-flash")
            c = await backend.apairwise(DEFAULT_PAIRWISE_TEMPLATE, {"prompt": "q", "response": GOOD,
                                                                    "baseline_model_response": BAD,
                                                                    "reference": REF}, "gemini-2.5-flash")
            return p, c
        finally:
            await backend.aclose()

    p, c = asyncio.run(go())
    assert p.score >= 4 and c.choice == "CANDIDATE"
    log = requests.get(f"{emulator.endpoints.url}/_emulator/requests", params={"path": "evaluateInstances"},
                       timeout=10).json()["requests"]
    assert log and all(q["path"].startswith("/v1beta1/") for q in log[-2:])
