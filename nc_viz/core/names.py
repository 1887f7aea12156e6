"""Names from users (file names, class names, titles) made safe to draw, to write as JSON or
HTML and to link to, whatever bytes they hold. No torch here.

File names that are not UTF-8 reach Python as lone surrogates (PEP 383); they are written as
`\\xNN` in text and as the file's own bytes, percent-encoded, in links.
"""
from __future__ import annotations

import dataclasses
import math
import os
import unicodedata
from functools import lru_cache
from typing import Any
from urllib.parse import quote


def readable(text: str) -> str:
    """`text` with bytes that are not UTF-8 shown as `\\xNN` (lone surrogates), else unchanged."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


_ESCAPED = ("Cc", "Cs", "Zl", "Zp")  # control characters, lone surrogates, line and paragraph separators


def _shown(char: str) -> str:
    if unicodedata.category(char) not in _ESCAPED:
        return char
    escaped = char.encode("unicode_escape").decode("ascii")
    return escaped if escaped != char else f"\\u{ord(char):04x}"


@lru_cache(maxsize=4096)
def display_name(text: str) -> str:
    """One line to draw: control characters (newline, tab, escape, ...) shown as `\\n`, `\\t`,
    `\\x1b`; bytes that are not UTF-8 as `\\xNN`."""
    if text.isascii() and text.isprintable():
        return text
    return "".join(_shown(c) for c in readable(text))


def href(relative: str) -> str:
    """A relative link to a file: the file name's own bytes, percent-encoded (ASCII)."""
    return quote(os.fsencode(relative), safe="/")


def json_safe(value: Any) -> Any:
    """`value` with every string UTF-8 encodable (`readable`) and every float that is not
    finite as None, so that strict JSON (allow_nan=False) can hold it; numpy scalars become
    Python numbers."""
    if hasattr(value, "item") and getattr(value, "shape", None) == ():   # a numpy (or 0-d) scalar
        value = value.item()
    if isinstance(value, str):
        return readable(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {json_safe(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def clean_figure(figure: Any) -> Any:
    """A render.Figure with every text drawn as one readable line (see `display_name`)."""
    rows = [dataclasses.replace(
        row, label=display_name(row.label), note=display_name(row.note),
        panels=[dataclasses.replace(p, title=display_name(p.title), caption=display_name(p.caption))
                for p in row.panels]) for row in figure.rows]
    return dataclasses.replace(figure, rows=rows, column_titles=[display_name(t) for t in figure.column_titles])
