"""Reading requests the way Google's JSON transcoding front end does.

The front end maps a REST request onto the API's proto request message with the proto3 JSON mapping, which accepts
each field under its original proto name (``text_input``) as well as its lowerCamelCase JSON name (``textInput``), in
bodies and query strings alike, at every depth. The handlers only ever read camelCase: :func:`camel_keys` (bodies,
via ``common.json_body``) and :func:`camel_query` (query strings, via the middleware in ``app.py``) bring whatever
was sent to that form. The front end's JSON reader is also lenient about a trailing comma before ``}`` or ``]``
(the Gemini API tuning tutorial's curl body has them); :func:`loads` accepts those too.

Responses are not touched: they are built in camelCase, as Google's are.
"""

from __future__ import annotations

import json
import re

from multidict import MultiDict, MultiDictProxy

from .errors import ApiError

# Fields whose JSON object holds *data*, not field names, so its keys are kept exactly as sent (the proto3 JSON
# mapping converts field names only: map keys and google.protobuf.Struct/Value keys are user data). The name of the
# field itself is still converted (``traffic_split`` -> ``trafficSplit``); what is inside is left alone, at any depth.
# The one list of such fields; names are matched after conversion, wherever they occur.
VERBATIM_FIELDS = frozenset({
    "labels",                # map<string, string>: TuningJob, Model, BatchPredictionJob, GenerateContentRequest...
    "trafficSplit",          # map<string, int32>: Endpoint, UndeployModelRequest (keys are deployed model ids)
    "metadata",              # Model.metadata (Value), Context.metadata (Struct)
    "args",                  # FunctionCall.args (Struct)
    "response",              # FunctionResponse.response (Struct)
    "responseJsonSchema",    # GenerationConfig / FunctionDeclaration (Value: a JSON Schema document)
    "parametersJsonSchema",  # FunctionDeclaration (Value)
    "jsonSchema",            # (Value)
    "example",               # Schema.example (Value)
    "default",               # Schema.default (Value)
    "modelParameters",       # BatchPredictionJob.model_parameters (Value)
    "instances",             # PredictRequest.instances (repeated Value)
})
# map<string, Message> fields: the keys are data (kept), each value is a message (its field names are converted).
MESSAGE_MAP_FIELDS = frozenset({
    "properties",            # Schema.properties: map<string, Schema> (keys are the user's property names)
    "defs",                  # Schema.defs: map<string, Schema>
})
# Google's system parameters are not request-message fields and keep their documented spelling.
SYSTEM_QUERY_PARAMS = frozenset({"access_token", "oauth_token", "upload_protocol", "$.xgafv"})

_MAYBE_TRAILING = re.compile(r",[ \t\n\r]*[}\]]")
_TRAILING_COMMA = re.compile(r'"(?:[^"\\]|\\.)*"|,(?=[ \t\n\r]*[}\]])', re.DOTALL)


def loads(raw: bytes | str) -> object:
    """``json.loads`` that also accepts one trailing comma after the last member of an object or array.

    Strings are matched first, so a ``,}`` inside a string is never touched; a removed comma is replaced by a space,
    so the positions in an error message still point into what the client sent. ``[,]`` and ``{,}`` stay invalid.
    """
    try:
        text = raw if isinstance(raw, str) else raw.decode(json.detect_encoding(raw))
        if _MAYBE_TRAILING.search(text):
            text = _TRAILING_COMMA.sub(lambda m: _drop_trailing_comma(m, text), text)
        return json.loads(text)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError alike
        raise ApiError(400, f"Invalid JSON payload received. {exc}") from None
    except RecursionError:
        raise ApiError(400, "Invalid JSON payload received. Nesting too deep.") from None


def _drop_trailing_comma(m: re.Match, text: str) -> str:
    if m[0] != ",":
        return m[0]
    i = m.start() - 1
    while i >= 0 and text[i] in " \t\n\r":
        i -= 1
    return m[0] if i < 0 or text[i] in "[{," else " "


def camel(name: str) -> str:
    """A proto field name's JSON name, as protoc derives it: drop each ``_`` and upper-case the letter after it."""
    if "_" not in name:
        return name
    out, upper = [], False
    for ch in name:
        if ch == "_":
            upper = True
        elif upper:
            out.append(ch.upper())
            upper = False
        else:
            out.append(ch)
    return "".join(out)


def camel_keys(obj, _path: str = ""):
    """``obj`` with every object key in lowerCamelCase, recursively, except inside the fields listed above.

    Both spellings of one field in the same object is a 400, as the front end rejects a field set twice.
    """
    if isinstance(obj, list):
        return [camel_keys(v, _path) for v in obj]
    if not isinstance(obj, dict):
        return obj
    out: dict = {}
    sent_as: dict[str, str] = {}
    for key, value in obj.items():
        name = camel(key)
        if name in out:
            # The proto JSON mapping (and protobuf's own parsers) reject a field given twice, under either name;
            # Google's exact wording for this is unverified (this follows protobuf's json_format).
            where = f' at "{_path}"' if _path else ""
            raise ApiError(400, f'Invalid JSON payload received. Message should not have multiple "{name}" fields'
                                f'{where} (sent as "{sent_as[name]}" and "{key}").')
        sent_as[name] = key
        path = f"{_path}.{name}" if _path else name
        if name in VERBATIM_FIELDS:
            out[name] = value
        elif name in MESSAGE_MAP_FIELDS and isinstance(value, dict):
            out[name] = {k: camel_keys(v, f"{path}[{k!r}]") for k, v in value.items()}
        else:
            out[name] = camel_keys(value, path)
    return out


def camel_query(query: MultiDictProxy | MultiDict) -> MultiDict | None:
    """The query string with camelCase keys (``page_size`` -> ``pageSize``, ``a_b.c_d`` -> ``aB.cD``), or None when
    nothing needs converting. Values are untouched (an update mask's paths are read by the handlers, in either form).
    A key repeated under one spelling stays repeated (repeated fields); under two spellings it is a 400."""
    if not any("_" in k for k in query):
        return None
    out: MultiDict = MultiDict()
    sent_as: dict[str, str] = {}
    for key, value in query.items():
        name = key if key in SYSTEM_QUERY_PARAMS else camel(key)
        if sent_as.setdefault(name, key) != key:
            # As for bodies: Google rejects a field set twice; its exact message is unverified.
            raise ApiError(400, f'Invalid query parameters: "{name}" is set more than once '
                                f'(as "{sent_as[name]}" and "{key}").')
        out.add(name, value)
    return out
