"""Prompt normalization for the leakage check (training user prompts vs evaluation prompts)."""

from __future__ import annotations

import string
import unicodedata

__all__ = ["normalize_prompt"]

_ASCII_STRIP = frozenset(string.punctuation + string.whitespace)
_ASCII_PUNCT = string.punctuation
_ASCII_LEAD = _ASCII_PUNCT + "".join(c for c in map(chr, range(128)) if c.isspace())  # includes \x1c-\x1f


def _strippable(ch: str) -> bool:
    if ch < "\x80":
        return ch in _ASCII_STRIP
    return ch.isspace() or unicodedata.category(ch)[0] == "P"


def normalize_prompt(text: str) -> str:
    """Canonical form of a prompt for the leakage check (training prompts vs evaluation prompts).

    NFKC (non-ASCII only), casefold, collapse runs of whitespace to one space, then strip punctuation
    (ASCII ``string.punctuation`` and Unicode category P*) and whitespace from both ends.

    Not :func:`gemini_tuning.core.metrics.normalize_text`, on purpose: a leaked prompt is the same question however
    it is punctuated, so this strips *every* punctuation mark at the ends ("-5%?" and "5" leak alike), while
    scoring an answer must keep what changes its meaning ("-5" is not "5", "50%" is not "50").

    :param text: a training user prompt or an evaluation prompt.
    """
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    text = " ".join(text.casefold().split())
    start, end = 0, len(text)
    while start < end and _strippable(text[start]):
        start += 1
    while end > start and _strippable(text[end - 1]):
        end -= 1
    return text[start:end]


def _first_word_key(normalized: str) -> str:
    """First word of an already normalized prompt, trailing punctuation stripped (see _ascii_leak_key)."""
    word = normalized.split(" ", 1)[0]
    end = len(word)
    while end and _strippable(word[end - 1]):
        end -= 1
    return word[:end]


def _ascii_leak_key(text: str) -> str:
    """``_first_word_key(normalize_prompt(text))`` for ASCII ``text`` without normalizing all of it.

    For ASCII, normalize_prompt is lower() + whitespace collapse + stripping punctuation/whitespace at both ends,
    so its first word is the first whitespace-delimited token after the leading punctuation/whitespace,
    lowercased. Used as an exact pre-filter: a prompt whose key is not the key of some evaluation prompt
    cannot equal it, and the full normalization is skipped.
    """
    if text and text[0] in _ASCII_LEAD:
        text = text.lstrip(_ASCII_LEAD)
    words = text.split(None, 1)
    return words[0].lower().rstrip(_ASCII_PUNCT) if words else ""
