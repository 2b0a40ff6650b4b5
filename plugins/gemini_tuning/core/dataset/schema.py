"""The msgspec schema of one example: typed decoders for the fast paths, the deterministic encoder."""

from __future__ import annotations

from typing import Any

import msgspec


# Decoding tries, in order: _VertexLine (text-only Vertex lines, the common case), _Example (any format, one
# C call), then the slow path (generic decode, then a format-aware walk that reports unknown fields, keeps
# non-text parts as plain dicts and lets msgspec.convert name the JSON path of any type error). Unknown
# fields and non-text parts make the typed decodes fail, which is what routes a line to the slow path.
class _TextPart(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    text: str


class _Content(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    role: str
    parts: list[_TextPart]  # may hold plain dicts (non-text parts) after the slow path


class _SystemInstruction(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, gc=False):
    role: str | None = None
    parts: list[_TextPart] | None = None


class _Message(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    role: str
    content: str


class _VertexLine(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, gc=False):
    """The common case, decoded first: a text-only Vertex line. Same key order as _Example."""

    systemInstruction: _SystemInstruction | None = None
    contents: list[_Content] | None = None
    tools: Any = None


class _Example(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, gc=False):
    # Field order == Vertex output key order (None fields are omitted when encoding).
    systemInstruction: _SystemInstruction | None = None
    contents: list[_Content] | None = None
    tools: Any = None
    system_instruction: _SystemInstruction | None = None
    messages: list[_Message] | None = None
    text_input: str | None = None
    textInput: str | None = None
    input: str | None = None
    output: str | None = None


class _GeminiExample(msgspec.Struct, gc=False):
    text_input: str
    output: str


_NON_TEXT_PART_KEYS = frozenset(
    {
        "inlineData", "fileData", "functionCall", "functionResponse", "executableCode", "codeExecutionResult",
        "videoMetadata", "thought", "thoughtSignature", "partMetadata", "mediaResolution",
        "inline_data", "file_data", "function_call", "function_response", "executable_code",
        "code_execution_result", "video_metadata", "thought_signature", "part_metadata", "media_resolution",
    }
)
_PART_KEYS = _NON_TEXT_PART_KEYS | {"text"}

# the fast paths decode typed (_VertexLine, then _Example), the slow path generically (formats._FormatReader.slow)
_vertex_decode = msgspec.json.Decoder(_VertexLine).decode
_typed_decode = msgspec.json.Decoder(_Example).decode
_generic_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder(order="deterministic").encode
