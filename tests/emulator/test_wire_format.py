"""Requests read the way Google's JSON transcoding front end reads them: snake_case or camelCase field names, in
bodies and query strings, at any depth (map and Struct keys left alone), trailing commas tolerated."""

from __future__ import annotations

import json

import pytest
import requests

from emulator import wire
from emulator.errors import ApiError
from harness.clients import LOCATION, PROJECT
from harness.data import demo_rows, unique
from harness.waits import wait_until

pytestmark = pytest.mark.fast

HEADERS = {"Content-Type": "application/json", "x-goog-api-key": "k"}

# The Gemini API tuning tutorial's curl body, byte for byte: snake_case names and trailing commas.
TUTORIAL_CREATE = r"""
      {
        "display_name": "number generator model",
        "base_model": "models/gemini-1.5-flash-001-tuning",
        "tuning_task": {
          "hyperparameters": {
            "batch_size": 2,
            "learning_rate": 0.001,
            "epoch_count":5,
          },
          "training_data": {
            "examples": {
              "examples": [
                {
                    "text_input": "1",
                    "output": "2",
                },{
                    "text_input": "3",
                    "output": "4",
                },{
                    "text_input": "-3",
                    "output": "-2",
                },{
                    "text_input": "twenty two",
                    "output": "twenty three",
                },{
                    "text_input": "two hundred",
                    "output": "two hundred one",
                },{
                    "text_input": "ninety nine",
                    "output": "one hundred",
                },{
                    "text_input": "8",
                    "output": "9",
                },{
                    "text_input": "-98",
                    "output": "-97",
                },{
                    "text_input": "1,000",
                    "output": "1,001",
                },{
                    "text_input": "10,100,000",
                    "output": "10,100,001",
                },{
                    "text_input": "thirteen",
                    "output": "fourteen",
                },{
                    "text_input": "eighty",
                    "output": "eighty one",
                },{
                    "text_input": "one",
                    "output": "two",
                },{
                    "text_input": "three",
                    "output": "four",
                },{
                    "text_input": "seven",
                    "output": "eight",
                }
              ]
            }
          }
        }
      }
"""
TUTORIAL_GENERATE = '{        "contents": [{        "parts": [{          "text": "LXIII"          }]        }]        }'


def _snake_keys(obj, skip=("labels",)) -> list[str]:
    """Every object key containing '_' (outside ``skip`` maps): a response must have none."""
    if isinstance(obj, list):
        return [k for v in obj for k in _snake_keys(v, skip)]
    if not isinstance(obj, dict):
        return []
    return [k for k, v in obj.items() for k in ([k] if "_" in k else []) + ([] if k in skip else _snake_keys(v, skip))]


def _tutorial_create(url: str, body: str = TUTORIAL_CREATE) -> dict:
    resp = requests.post(f"{url}/v1beta/tunedModels", data=body, headers=HEADERS, timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()


# ------------------------------------------------------------------------------------------------- over HTTP
def test_gemini_api_tutorial_flow_byte_for_byte(emulator):
    url = emulator.endpoints.url
    op = _tutorial_create(url)
    model = op["metadata"]["tunedModel"]
    assert op["done"] is False and op["name"].startswith(f"{model}/operations/")
    assert op["metadata"]["totalSteps"] == 5 * -(-15 // 2)        # epoch_count 5, batch_size 2, 15 examples

    # the tutorial's operation GET is on v1beta too
    op_beta = requests.get(f"{url}/v1beta/{op['name']}", headers=HEADERS, timeout=10)
    assert op_beta.status_code == 200, op_beta.text
    assert op_beta.json()["name"] == op["name"] and "completedPercent" in op_beta.json()["metadata"]

    # the tutorial polls GET /v1/{operation} and reads .metadata.completedPercent and .done
    op = wait_until(lambda: requests.get(f"{url}/v1/{op['name']}", headers=HEADERS, timeout=10).json(),
                    lambda o: isinstance(o["metadata"]["completedPercent"], float) and o.get("done"), timeout=60)
    assert "error" not in op and op["metadata"]["completedPercent"] == 100.0
    assert op["response"]["tuningTask"]["hyperparameters"] == {"epochCount": 5, "batchSize": 2, "learningRate": 0.001}
    assert _snake_keys(op) == []

    tuned = requests.get(f"{url}/v1beta/{op['metadata']['tunedModel']}", headers=HEADERS, timeout=10).json()
    assert tuned["state"] == "ACTIVE" and tuned["displayName"] == "number generator model"
    assert tuned["baseModel"] == "models/gemini-1.5-flash-001-tuning"

    gen = requests.post(f"{url}/v1beta/{model}:generateContent", data=TUTORIAL_GENERATE, headers=HEADERS, timeout=10)
    assert gen.status_code == 200, gen.text
    text = gen.json()["candidates"][0]["content"]["parts"][0]["text"]
    assert isinstance(text, str) and text

    # update mask paths are field paths: the snake_case spelling works, as does a snake_case body
    patched = requests.patch(f"{url}/v1beta/{model}?update_mask=description,display_name", headers=HEADERS,
                             data='{"description": "adds one", "display_name": "renamed",}', timeout=10)
    assert patched.status_code == 200, patched.text
    assert patched.json()["description"] == "adds one" and patched.json()["displayName"] == "renamed"

    # two more models, so that pages of one have a next page whatever else the session created
    others = {_tutorial_create(url)["metadata"]["tunedModel"] for _ in range(2)}
    # The tutorial's own page-token URL is malformed (it appends "?key=..." after the token, a second "?"), so the
    # key goes in the header here; the query parameters are the tutorial's snake_case ones.
    first = requests.get(f"{url}/v1beta/tunedModels?page_size=1", headers=HEADERS, timeout=10).json()
    assert len(first["tunedModels"]) == 1 and first["nextPageToken"]
    second = requests.get(f"{url}/v1beta/tunedModels?page_size=1&page_token={first['nextPageToken']}",
                          headers=HEADERS, timeout=10).json()
    assert len(second["tunedModels"]) == 1 and second["tunedModels"][0]["name"] != first["tunedModels"][0]["name"]
    names, token = [], None
    while True:
        query = "page_size=1" + (f"&page_token={token}" if token else "")
        page = requests.get(f"{url}/v1beta/tunedModels?{query}", headers=HEADERS, timeout=10).json()
        assert len(page["tunedModels"]) <= 1
        names += [m["name"] for m in page["tunedModels"]]
        token = page.get("nextPageToken")
        if not token:
            break
    assert {model, *others} <= set(names) and len(names) == len(set(names))

    assert requests.delete(f"{url}/v1beta/{model}", headers=HEADERS, timeout=10).json() == {}
    gone = requests.get(f"{url}/v1beta/{model}", headers=HEADERS, timeout=10)
    assert gone.status_code == 404
    assert gone.json()["error"]["code"] == 404 and gone.json()["error"]["status"] == "NOT_FOUND"


def test_tuned_model_id_query_param_in_snake_case(emulator):
    url = emulator.endpoints.url
    tuned_id = unique("wire")
    resp = requests.post(f"{url}/v1beta/tunedModels?tuned_model_id={tuned_id}", data=TUTORIAL_CREATE,
                         headers=HEADERS, timeout=10)
    assert resp.status_code == 200, resp.text
    assert resp.json()["metadata"]["tunedModel"] == f"tunedModels/{tuned_id}"


def test_both_spellings_of_a_field_are_rejected(emulator):
    url = emulator.endpoints.url
    body = TUTORIAL_CREATE.replace('"display_name": "number generator model",',
                                   '"display_name": "a", "displayName": "b",')
    resp = requests.post(f"{url}/v1beta/tunedModels", data=body, headers=HEADERS, timeout=10)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["status"] == "INVALID_ARGUMENT" and "displayName" in resp.json()["error"]["message"]
    listed = requests.get(f"{url}/v1beta/tunedModels?page_size=1&pageSize=2", headers=HEADERS, timeout=10)
    assert listed.status_code == 400 and listed.json()["error"]["status"] == "INVALID_ARGUMENT"


def test_invalid_json_still_gets_googles_envelope(emulator):
    for bad in ('{"display_name": "x",,}', '{"a": [,]}', '{,}', '{"a": 1'):
        resp = requests.post(f"{emulator.endpoints.url}/v1beta/tunedModels", data=bad, headers=HEADERS, timeout=10)
        assert resp.status_code == 400, bad
        err = resp.json()["error"]
        assert err["status"] == "INVALID_ARGUMENT" and err["message"].startswith("Invalid JSON payload received.")


def test_vertex_tuning_job_in_snake_case_with_trailing_commas(emulator, upload):
    url = f"{emulator.endpoints.url}/v1/projects/{PROJECT}/locations/{LOCATION}/tuningJobs"
    train = upload("".join(json.dumps(r) + "\n" for r in demo_rows("train.jsonl", 24)))
    run = unique("wire")

    def body(display: str) -> str:
        return f"""{{
          "base_model": "gemini-2.5-flash",
          "supervised_tuning_spec": {{
            "training_dataset_uri": "{train}",
            "hyper_parameters": {{"epoch_count": 1, "adapter_size": "ADAPTER_SIZE_TWO",
                                  "learning_rate_multiplier": 2.0,}},
          }},
          "tuned_model_display_name": "{display}",
          "labels": {{"my_key": "v", "run_id": "{run}",}},
        }}"""

    jobs = []
    for display in ("wire one", "wire two"):
        resp = requests.post(url, data=body(display), headers={"Content-Type": "application/json"}, timeout=10)
        assert resp.status_code == 200, resp.text
        jobs.append(resp.json())
    job = jobs[0]
    assert job["baseModel"] == "gemini-2.5-flash" and job["tunedModelDisplayName"] == "wire one"
    assert job["supervisedTuningSpec"] == {"trainingDatasetUri": train, "hyperParameters": {
        "epochCount": "1", "learningRateMultiplier": 2.0, "adapterSize": "ADAPTER_SIZE_TWO"}}
    assert job["labels"] == {"my_key": "v", "run_id": run}             # map keys are data: not camel-cased
    assert _snake_keys(job) == []

    flt = f'labels.run_id="{run}"'
    first = requests.get(url, params={"page_size": 1, "filter": flt}, timeout=10).json()
    assert len(first["tuningJobs"]) == 1 and first["nextPageToken"]
    second = requests.get(url, params={"page_size": 1, "page_token": first["nextPageToken"], "filter": flt},
                          timeout=10).json()
    assert len(second["tuningJobs"]) == 1 and "nextPageToken" not in second
    assert {first["tuningJobs"][0]["name"], second["tuningJobs"][0]["name"]} == {j["name"] for j in jobs}

    done = wait_until(lambda: requests.get(f"{emulator.endpoints.url}/v1/{job['name']}", timeout=10).json(),
                      lambda j: j["state"] in ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED"), timeout=60)
    assert done["state"] == "JOB_STATE_SUCCEEDED", done
    assert done["labels"] == {"my_key": "v", "run_id": run}


@pytest.mark.parametrize("surface", ["vertex", "gemini_api"])
def test_generate_content_reads_snake_case_config_and_system_instruction(emulator, surface):
    if surface == "vertex":
        url = (f"{emulator.endpoints.url}/v1/projects/{PROJECT}/locations/{LOCATION}/publishers/google/models/"
               "gemini-2.5-flash:generateContent")
    else:
        url = f"{emulator.endpoints.url}/v1beta/models/gemini-2.5-flash:generateContent"
    contents = '"contents": [{"role": "user", "parts": [{"text": "Tell me about the sea"},]},]'

    def post(extra: str) -> dict:
        resp = requests.post(url, data="{" + contents + extra + "}", headers=HEADERS, timeout=10)
        assert resp.status_code == 200, resp.text
        return resp.json()

    plain = post("")
    assert plain["candidates"][0]["finishReason"] == "STOP"
    capped = post(', "generation_config": {"max_output_tokens": 1, "temperature": 0,},')
    assert capped["candidates"][0]["finishReason"] == "MAX_TOKENS"
    assert capped["usageMetadata"]["candidatesTokenCount"] == 1
    instructed = post(', "system_instruction": {"parts": [{"text": "You are a very, very, very terse sailor."}]}')
    assert instructed["usageMetadata"]["promptTokenCount"] > plain["usageMetadata"]["promptTokenCount"]


# ------------------------------------------------------------------------------------------------- wire.loads
def test_loads_accepts_trailing_commas():
    assert wire.loads(b'{"a": 1,}') == {"a": 1}
    assert wire.loads(b'[1, 2, ]') == [1, 2]
    assert wire.loads(b'{"a": [1, {"b": [],\n\t},\r\n],   }') == {"a": [1, {"b": []}]}
    assert wire.loads(b'{"a": {"b": {"c": [[1,],],},},}') == {"a": {"b": {"c": [[1]]}}}
    assert wire.loads(TUTORIAL_CREATE.encode())["tuning_task"]["hyperparameters"]["epoch_count"] == 5
    assert wire.loads(b"\xef\xbb\xbf[1,]") == [1]                          # a UTF-8 BOM, as json.loads allows


def test_loads_leaves_string_contents_alone():
    assert wire.loads(b'{"a": ",}", "b": "x,]",}') == {"a": ",}", "b": "x,]"}
    assert wire.loads(b'["\\",}", "\\\\", ",\\n]",]') == ['",}', "\\", ",\n]"]
    assert wire.loads(b'{"text_input": "10,100,000", "output": "1, }"}') == {"text_input": "10,100,000",
                                                                            "output": "1, }"}
    assert wire.loads('{"k": "日本, ]",}'.encode()) == {"k": "日本, ]"}


@pytest.mark.parametrize("bad", [b'{"a": 1,,}', b"[,]", b"{,}", b'[1,,]', b'{"a": "1,}', b"\xff{}", b"{} ,"])
def test_loads_still_rejects_invalid_json(bad):
    with pytest.raises(ApiError) as exc:
        wire.loads(bad)
    assert exc.value.code == 400 and exc.value.message.startswith("Invalid JSON payload received.")


def test_loads_error_positions_point_into_what_was_sent():
    with pytest.raises(ApiError) as exc:
        wire.loads(b'{"a": [1,],\n "b": x}')
    assert "line 2 column 7" in exc.value.message


# ------------------------------------------------------------------------------------------------- wire.camel_keys
def test_camel_keys_converts_field_names_at_every_depth():
    assert wire.camel("text_input") == "textInput" and wire.camel("hyper_parameters") == "hyperParameters"
    assert wire.camel("training_dataset_uri") == "trainingDatasetUri" and wire.camel("textInput") == "textInput"
    sent = {"tuning_task": {"training_data": {"examples": {"examples": [{"text_input": "1", "output": "2"}]}}},
            "supervised_tuning_spec": {"hyper_parameters": {"epoch_count": 1}}, "already": {"camelCase": [1]}}
    assert wire.camel_keys(sent) == {
        "tuningTask": {"trainingData": {"examples": {"examples": [{"textInput": "1", "output": "2"}]}}},
        "supervisedTuningSpec": {"hyperParameters": {"epochCount": 1}}, "already": {"camelCase": [1]}}


def test_camel_keys_leaves_map_and_struct_keys_alone():
    sent = {
        "labels": {"my_key": "v"},
        "traffic_split": {"123_4": 100},
        "metadata": {"some_thing": {"deep_er": 1}},
        "contents": [{"parts": [
            {"function_call": {"name": "get_weather", "args": {"city_name": "Paris", "opts": {"in_celsius": True}}}},
            {"function_response": {"name": "get_weather", "response": {"temp_c": 21, "nested": [{"a_b": 1}]}}},
        ]}],
        "tools": [{"function_declarations": [{
            "name": "get_weather",
            "parameters": {
                "type": "OBJECT",
                "properties": {"city_name": {"type": "STRING", "max_length": "9"},
                               "opts": {"type": "OBJECT", "properties": {"in_celsius": {"type": "BOOLEAN"}}}},
                "property_ordering": ["city_name", "opts"], "example": {"city_name": "Rome"}},
            "parameters_json_schema": {"type": "object", "additional_properties": False},
        }]}],
        "generation_config": {"response_json_schema": {"properties": {"snake_prop": {"min_length": 1}}}},
    }
    got = wire.camel_keys(sent)
    assert got["labels"] == {"my_key": "v"}
    assert got["trafficSplit"] == {"123_4": 100}
    assert got["metadata"] == {"some_thing": {"deep_er": 1}}
    parts = got["contents"][0]["parts"]
    assert parts[0]["functionCall"]["args"] == {"city_name": "Paris", "opts": {"in_celsius": True}}
    assert parts[1]["functionResponse"]["response"] == {"temp_c": 21, "nested": [{"a_b": 1}]}
    decl = got["tools"][0]["functionDeclarations"][0]
    # Schema.properties is a map<string, Schema>: the property names are kept, each Schema's own fields converted
    assert decl["parameters"]["properties"] == {
        "city_name": {"type": "STRING", "maxLength": "9"},
        "opts": {"type": "OBJECT", "properties": {"in_celsius": {"type": "BOOLEAN"}}}}
    assert decl["parameters"]["propertyOrdering"] == ["city_name", "opts"]      # values are never touched
    assert decl["parameters"]["example"] == {"city_name": "Rome"}
    assert decl["parametersJsonSchema"] == {"type": "object", "additional_properties": False}
    assert got["generationConfig"]["responseJsonSchema"] == {"properties": {"snake_prop": {"min_length": 1}}}


def test_camel_keys_rejects_both_spellings_of_one_field():
    with pytest.raises(ApiError) as exc:
        wire.camel_keys({"tuning_task": {"hyperparameters": {"epoch_count": 1, "epochCount": 2}}})
    assert exc.value.code == 400 and exc.value.status == "INVALID_ARGUMENT"
    assert '"epochCount"' in exc.value.message and "tuningTask.hyperparameters" in exc.value.message
    with pytest.raises(ApiError):
        wire.camel_keys([{"text_input": "a", "textInput": "b"}])
    # ...but two spellings as *map keys* are two different keys
    assert wire.camel_keys({"labels": {"my_key": "a", "myKey": "b"}}) == {"labels": {"my_key": "a", "myKey": "b"}}


def test_camel_query():
    from multidict import MultiDict

    assert wire.camel_query(MultiDict(pageSize="1", filter="x")) is None
    got = wire.camel_query(MultiDict([("page_size", "1"), ("page_token", "MQ=="), ("update_mask", "display_name"),
                                      ("key", "k"), ("access_token", "t"), ("a_b.c_d", "1"), ("a_b.c_d", "2")]))
    assert list(got.items()) == [("pageSize", "1"), ("pageToken", "MQ=="), ("updateMask", "display_name"),
                                 ("key", "k"), ("access_token", "t"), ("aB.cD", "1"), ("aB.cD", "2")]
    with pytest.raises(ApiError):
        wire.camel_query(MultiDict([("page_size", "1"), ("pageSize", "2")]))

