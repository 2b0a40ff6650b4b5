"""Reading rendered pages (the UI's, the report's) as text: every text with the elements open around it, and the
x-axis labels of an SVG chart."""

from __future__ import annotations

import re
from html.parser import HTMLParser


class _Texts(HTMLParser):
    """The text of every element, with the tags and attributes open around it."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, dict]] = []
        self.found: list[tuple[list[tuple[str, dict]], str]] = []

    def handle_starttag(self, tag, attrs):
        self.stack.append((tag, dict(attrs)))

    def handle_startendtag(self, tag, attrs):
        pass

    def handle_endtag(self, tag):
        while self.stack:
            if self.stack.pop()[0] == tag:
                break

    def handle_data(self, text):
        if text.strip():
            self.found.append((list(self.stack), text.strip()))


def texts(page: str) -> list[tuple[list[tuple[str, dict]], str]]:
    p = _Texts()
    p.feed(page)
    p.close()
    return p.found


def x_tick_labels(page: str, within: str) -> list[str]:
    """The numeric labels of the x axis of the first chart inside an element of class ``within``: the texts of the
    chart centred under a point (``text-anchor="middle"``) that are numbers."""
    out = []
    for stack, text in texts(page):
        classes = [a.get("class", "") for _, a in stack]
        if not any(within in c.split() for c in classes) or stack[-1][0] != "text":
            continue
        if stack[-1][1].get("text-anchor") == "middle" and re.fullmatch(r"-?[\d.]+(e[+-]?\d+)?", text):
            out.append(text)
    return out
