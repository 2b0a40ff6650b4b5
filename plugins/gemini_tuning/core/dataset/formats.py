"""Input formats: which format a line is (contents, messages, text_input, input_output), the slow decode path
that names unknown fields and keeps non-text parts, and the conversion of each format to one example.

The checks on turns and the target's limits are :mod:`.turns` and :mod:`.targets`; the methods here are mixed into
the run (:class:`~gemini_tuning.core.dataset.run._Run`), whose ``add`` collects the issues.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..issues import json_type
from .schema import (
    _NON_TEXT_PART_KEYS,
    _PART_KEYS,
    _Content,
    _Example,
    _GeminiExample,
    _generic_decode,
    _SystemInstruction,
    _TextPart,
)

_FORMAT_FIELDS = {
    "contents": ("contents", "systemInstruction", "system_instruction", "tools"),
    "messages": ("messages",),
    "text_input": ("text_input", "textInput", "output"),
    "input_output": ("input", "output"),
}
_ALL_FIELDS = ("systemInstruction", "contents", "tools", "system_instruction", "messages", "text_input",
               "textInput", "input", "output")


def _detect(c: bool, si: bool, m: bool, ti: bool, tI: bool, inp: bool, out: bool, tools: bool):
    """Return (format, None) or (None, (rule, message)) from which fields are present (not null)."""
    anchors = [name for name, on in (("contents", c), ("messages", m), ("text_input", ti or tI),
                                     ("input", inp)) if on]
    if len(anchors) == 1:
        a = anchors[0]
        if a == "text_input" and ti and tI:
            return None, ("bad-structure", "both text_input and textInput are present; use one")
        return ("input_output" if a == "input" else a), None
    if anchors:
        return None, ("unknown-format", f"fields of several formats: {', '.join(anchors)}")
    found = [n for n, on in (("systemInstruction", si), ("tools", tools), ("output", out)) if on]
    hint = f" (found only {', '.join(found)})" if found else ""
    expected = "contents, messages, text_input/textInput + output, or input + output"
    return None, ("unknown-format", f"no recognised format: expected {expected}{hint}")


class _FormatReader:
    """Format detection and conversion, mixed into the run (which provides ``add``, ``vertex``,
    ``unknown_severity``, ``formats``, ``_turns``, ``_tokens_ok`` and ``_gemini_ok``)."""

    # -- slow path: generic decode, unknown fields, non-text parts
    def slow(self, raw: bytes, ln: int) -> _Example | None:
        try:
            obj = _generic_decode(raw)
        except ValueError as exc:  # msgspec.DecodeError or UnicodeDecodeError
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as u:
                self.add(ln, "not-utf8", f"byte 0x{raw[u.start]:02x} at offset {u.start} is not valid UTF-8")
            else:
                self.add(ln, "invalid-json", f"invalid JSON: {exc}")
            return None
        if type(obj) is not dict:
            self.add(ln, "unknown-format", f"expected a JSON object, got {json_type(obj, article=True)}")
            return None
        g = obj.get
        fmt, problem = _detect(g("contents") is not None, g("systemInstruction") is not None
                               or g("system_instruction") is not None, g("messages") is not None,
                               g("text_input") is not None, g("textInput") is not None, g("input") is not None,
                               g("output") is not None, g("tools") is not None)
        if problem:
            self.add(ln, *problem)
            return None
        known = _FORMAT_FIELDS[fmt]
        unknown = [k for k in obj if k not in known]
        clean = {k: v for k, v in obj.items() if k in known}
        raw_parts: list[tuple[str, int, int, dict]] = []  # (where, turn, part index, dict)
        for key in ("systemInstruction", "system_instruction"):
            si = clean.get(key)
            if type(si) is dict:
                clean[key] = si = self._clean(si, ("role", "parts"), key, unknown)
                if type(si.get("parts")) is list:
                    si["parts"] = self._clean_parts(si["parts"], key, -1, f"{key}.parts", unknown, raw_parts)
        if fmt == "contents" and type(clean.get("contents")) is list:
            turns = []
            for i, turn in enumerate(clean["contents"]):
                if type(turn) is dict:
                    turn = self._clean(turn, ("role", "parts"), f"contents[{i}]", unknown)
                    if type(turn.get("parts")) is list:
                        turn["parts"] = self._clean_parts(turn["parts"], "contents", i, f"contents[{i}].parts",
                                                          unknown, raw_parts)
                turns.append(turn)
            clean["contents"] = turns
        elif fmt == "messages" and type(clean.get("messages")) is list:
            clean["messages"] = [self._clean(m, ("role", "content"), f"messages[{i}]", unknown)
                                 if type(m) is dict else m for i, m in enumerate(clean["messages"])]
        if unknown:
            names = ", ".join(unknown[:10]) + (f" (+{len(unknown) - 10} more)" if len(unknown) > 10 else "")
            self.add(ln, "unknown-field", f"unknown field(s) for the {fmt} format, ignored: {names}",
                     self.unknown_severity)
            if self.unknown_severity == "error":
                return None
        try:
            ex = msgspec.convert(clean, _Example)
        except msgspec.ValidationError as exc:
            self.add(ln, "bad-structure", str(exc))
            return None
        for where, turn, j, part in raw_parts:
            text = part.get("text")
            if text is not None and type(text) is not str:
                path = f"{where}.parts[{j}]" if turn < 0 else f"contents[{turn}].parts[{j}]"
                got = json_type(text, article=True)
                self.add(ln, "bad-structure", f"Expected `str`, got {got} - at `$.{path}.text`")
                return None
            if turn < 0:
                getattr(ex, where).parts[j] = part
            else:
                ex.contents[turn].parts[j] = part
        return ex

    @staticmethod
    def _clean(obj: dict, known: tuple, path: str, unknown: list) -> dict:
        extra = [k for k in obj if k not in known]
        if not extra:
            return obj
        unknown.extend(f"{path}.{k}" for k in extra)
        return {k: v for k, v in obj.items() if k in known}

    @staticmethod
    def _clean_parts(parts: list, where: str, turn: int, path: str, unknown: list, raw_parts: list) -> list:
        out = []
        for j, part in enumerate(parts):
            if type(part) is dict:
                extra = [k for k in part if k not in _PART_KEYS]
                if extra:
                    unknown.extend(f"{path}[{j}].{k}" for k in extra)
                    part = {k: v for k, v in part.items() if k in _PART_KEYS}
                if any(k in _NON_TEXT_PART_KEYS for k in part):
                    raw_parts.append((where, turn, j, part))
                    part = {"text": ""}  # placeholder for the typed conversion; the dict is put back after
            out.append(part)
        return out

    # -- per-format conversion. Each returns (object to encode, system, user, model chars, user prompts)
    #    or None when the line has an error.
    def from_contents(self, ln: int, ex: _Example):
        if ex.system_instruction is not None:
            if ex.systemInstruction is not None:
                self.add(ln, "bad-structure", "both systemInstruction and system_instruction are present")
                return None
            ex.systemInstruction, ex.system_instruction = ex.system_instruction, None
        return self._turns(ln, ex, ex.systemInstruction, ex.contents, "contents", 0, "model")

    def from_messages(self, ln: int, ex: _Example):
        msgs = ex.messages
        system = None
        contents = []
        for i, m in enumerate(msgs):
            role = m.role
            if role == "user" or role == "assistant":
                contents.append(_Content("user" if role == "user" else "model", [_TextPart(m.content)]))
            elif role == "system":
                if i:
                    self.add(ln, "role-order", f"messages[{i}] is a system message; only the first may be")
                    return None
                system = _SystemInstruction("system", [_TextPart(m.content)])
            else:
                self.add(ln, "invalid-role", f"messages[{i}].role is {role!r}; expected system, user or assistant")
                return None
        out = _Example(systemInstruction=system, contents=contents)
        return self._turns(ln, out, system, contents, "messages", 1 if system else 0, "assistant")

    def from_pair(self, ln: int, inp: str | None, out: str | None, inp_name: str):
        if inp is None or out is None:
            self.add(ln, "bad-structure", f"Object missing required field `{inp_name if inp is None else 'output'}`")
            return None
        bad = [n for n, t in ((inp_name, inp), ("output", out)) if not t or t.isspace()]
        if bad:
            self.add(ln, "empty-text", " and ".join(bad) + " has no text")
            return None
        ui, mo = len(inp), len(out)
        if self.vertex:
            if not self._tokens_ok(ln, ui + mo):
                return None
            obj: Any = _Example(contents=[_Content("user", [_TextPart(inp)]), _Content("model", [_TextPart(out)])])
        else:
            if not self._gemini_ok(ln, ui, mo):
                return None
            obj = _GeminiExample(inp, out)
        return obj, 0, ui, mo, (inp,)

    def convert(self, ln: int, ex: _Example):
        """Detect the format of a decoded line, drop foreign fields, dispatch."""
        fmt, problem = _detect(ex.contents is not None, ex.systemInstruction is not None
                               or ex.system_instruction is not None, ex.messages is not None,
                               ex.text_input is not None, ex.textInput is not None, ex.input is not None,
                               ex.output is not None, ex.tools is not None)
        if problem:
            self.add(ln, *problem)
            return None
        self.formats[fmt] += 1
        known = _FORMAT_FIELDS[fmt]
        foreign = [k for k in _ALL_FIELDS if k not in known and getattr(ex, k) is not None]
        if foreign:
            self.add(ln, "unknown-field", f"unknown field(s) for the {fmt} format, ignored: {', '.join(foreign)}",
                     self.unknown_severity)
            if self.unknown_severity == "error":
                return None
            for k in foreign:
                setattr(ex, k, None)
        if fmt == "contents":
            return self.from_contents(ln, ex)
        if fmt == "messages":
            return self.from_messages(ln, ex)
        if fmt == "text_input":
            name = "text_input" if ex.text_input is not None else "textInput"
            return self.from_pair(ln, ex.text_input if ex.text_input is not None else ex.textInput, ex.output, name)
        return self.from_pair(ln, ex.input, ex.output, "input")

