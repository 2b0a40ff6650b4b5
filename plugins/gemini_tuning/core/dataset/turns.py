"""Turn checks for contents / messages examples: system text, roles, alternation, empty turns.

A fast path recognises the common valid shape without the full walk (the hot path of the dataset benchmark);
everything else goes to the full walk, and both hand a structurally valid example to the target's rules
(:mod:`.targets`). Mixed into the run (:class:`~gemini_tuning.core.dataset.run._Run`).
"""

from __future__ import annotations

from typing import Any

from .limits import _VERTEX_MAX_CHARS
from .schema import _TextPart


def _count_parts(parts) -> tuple[int, bool, int]:
    """(characters of text, whether any part has content, number of non-text parts) for one turn's parts."""
    chars = raw = 0
    has = False
    for p in parts:
        if type(p) is _TextPart:
            t = p.text
        else:
            raw += 1
            has = True
            t = p.get("text") or ""
        chars += len(t)
        if not has and t and not t.isspace():
            has = True
    return chars, has, raw


def _turn_text(parts: list) -> str:
    if len(parts) == 1 and type(parts[0]) is _TextPart:
        return parts[0].text
    return "".join(p.text if type(p) is _TextPart else (p.get("text") or "") for p in parts)


def _single_text(c, role: str) -> int:
    """The length of turn ``c``'s text when it is ``role``'s one non-blank text part; -1 for anything else (the
    full walk, :meth:`_TurnChecks._turns_full`, then decides and reports)."""
    parts = c.parts
    if c.role != role or len(parts) != 1 or type(parts[0]) is not _TextPart:
        return -1
    t = parts[0].text
    return -1 if not t or t.isspace() else len(t)


class _TurnChecks:
    """The turn checks, mixed into the run (which provides ``add``, ``vertex``, ``eval_set`` and ``_target``)."""

    def _turns(self, ln: int, ex: Any, si, contents: list, where: str, offset: int, model_name: str):
        """Fast path of :meth:`_turns_full` for the common case: text-only single-part turns alternating
        user/model and ending with model, non-blank texts. Anything else goes to the full version.

        The two share their checks: this one reports nothing itself, it only recognises the common valid shape
        without the full walk (the hot path of the dataset benchmark) and hands everything else, and every limit,
        to :meth:`_turns_full` and :meth:`_target`, where each rule is written once."""
        full = self._turns_full
        sys_c = 0
        if si is not None:
            parts = si.parts
            if not parts or len(parts) != 1 or type(parts[0]) is not _TextPart:
                return full(ln, ex, si, contents, where, offset, model_name)
            t = parts[0].text
            if not t or t.isspace():
                return full(ln, ex, si, contents, where, offset, model_name)
            sys_c = len(t)
            si.role = "system"
        if not contents:
            return full(ln, ex, si, contents, where, offset, model_name)
        user_c = model_c = 0
        it = iter(contents)
        for c in it:
            n = _single_text(c, "user")
            if n < 0:
                return full(ln, ex, si, contents, where, offset, model_name)
            user_c += n
            c = next(it, None)
            n = -1 if c is None else _single_text(c, "model")
            if n < 0:
                return full(ln, ex, si, contents, where, offset, model_name)
            model_c += n
        if self.vertex and sys_c + user_c + model_c <= _VERTEX_MAX_CHARS:
            if self.eval_set is None:
                return ex, sys_c, user_c, model_c, ()
            return ex, sys_c, user_c, model_c, [c.parts[0].text for c in contents[::2]]  # the user turns
        return self._target(ln, ex, si, contents, sys_c, user_c, model_c, 0)

    def _turns_full(self, ln: int, ex: Any, si, contents: list, where: str, offset: int, model_name: str):
        """Shared checks for contents / messages: system text, roles, alternation, empty turns, limits."""
        if not contents:
            self.add(ln, "bad-structure", f"{where} has no user/{model_name} turns")
            return None
        ok = True
        n_raw = 0
        sys_c = 0
        if si is not None:
            chars, has, raw = _count_parts(si.parts or ())
            sys_c += chars
            n_raw += raw
            if not has:
                self.add(ln, "empty-text", "system instruction has no text" if where == "contents"
                         else f"{where}[0] (system) has no text")
                ok = False
            si.role = "system"
        user_c = model_c = 0
        bad_role = order = None
        empty = []
        for i, c in enumerate(contents):
            chars, has, raw = _count_parts(c.parts)
            n_raw += raw
            if not has:
                empty.append(i)
            role = c.role
            if role == "user":
                user_c += chars
                if i & 1 and order is None:
                    order = i
            elif role == "model":
                model_c += chars
                if not i & 1 and order is None:
                    order = i
            elif bad_role is None:
                bad_role = i
        if bad_role is not None:
            self.add(ln, "invalid-role", f"contents[{bad_role}].role is {contents[bad_role].role!r}; expected "
                                         "'user' or 'model'")
            return None
        if order is not None:
            got = "user" if contents[order].role == "user" else model_name
            self.add(ln, "role-order", f"{where}[{order + offset}] is a {got} turn; turns must alternate "
                                       f"user/{model_name}, starting with user")
            ok = False
        elif contents[-1].role != "model":
            article = "an" if model_name == "assistant" else "a"
            self.add(ln, "last-turn-not-model", f"the last turn ({where}[{len(contents) - 1 + offset}]) is user;"
                                                f" an example must end with {article} {model_name} turn")
            ok = False
        if empty:
            self.add(ln, "empty-text", ", ".join(f"{where}[{i + offset}]" for i in empty) + " has no text")
            ok = False
        if not ok:
            return None
        return self._target(ln, ex, si, contents, sys_c, user_c, model_c, n_raw)
