"""Line-by-line reading of annotation text files, naming the file in every error."""
from __future__ import annotations

import posixpath
from pathlib import Path
from typing import Iterator

from ..core.errors import NcVizError


def read_lines(path: Path, what: str) -> list[tuple[int, str]]:
    """`(line number, text)` of every non-blank line of `path` (1-based, trailing newline and
    carriage return stripped; a UTF-8 byte order mark at the start is not part of the first
    line). A missing or unreadable file is an `NcVizError` naming it."""
    from ..core.files import regular_file_problem

    problem = regular_file_problem(path, what)
    if problem and not problem.startswith("no such"):
        raise NcVizError(f"{path}: {problem}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise NcVizError(f"{path}: {what} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise NcVizError(f"{path}: cannot read {what}: {exc}") from None
    return [(n, line.rstrip("\r")) for n, line in enumerate(text.split("\n"), start=1) if line.strip()]


def split_fields(lines: list[tuple[int, str]], sep: str | None) -> Iterator[tuple[int, list[str]]]:
    """Each line split on `sep` (None: any whitespace), fields stripped."""
    for n, line in lines:
        yield n, [f.strip() for f in (line.split(sep) if sep else line.split())]


def inside(root: Path, relative: str) -> Path | None:
    """`root / relative`, or None when `relative` is absolute or climbs out with `..`."""
    rel = Path(relative)
    if not relative or rel.is_absolute() or ".." in rel.parts:
        return None
    return root / rel


def normal(relative: str) -> str:
    """A relative path written one way: `./a.png`, `a//b.png`, `a/./b.png` -> `a.png`, `a/b.png`
    (POSIX `normpath`; a path that climbs out stays climbing out, for `inside` to refuse)."""
    return posixpath.normpath(relative) if relative else relative


class FirstOfEach:
    """Remembers the line of each key's first appearance, so a later one is told as a duplicate."""

    def __init__(self) -> None:
        self.first: dict[str, int] = {}

    def duplicate(self, key: str, line: int) -> str:
        """'' the first time `key` is seen; afterwards the problem's reason."""
        if key not in self.first:
            self.first[key] = line
            return ""
        return f"listed twice: line {self.first[key]}'s is used"
