"""Line-by-line reading of annotation text files, naming the file in every error."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from ..errors import NcVizError


def read_lines(path: Path, what: str) -> list[tuple[int, str]]:
    """`(line number, text)` of every non-blank line of `path` (1-based, trailing newline and
    carriage return stripped). A missing or unreadable file is an `NcVizError` naming it."""
    from ..safety import regular_file_problem

    problem = regular_file_problem(path, what)
    if problem and not problem.startswith("no such"):
        raise NcVizError(f"{path}: {problem}")
    try:
        text = path.read_text(encoding="utf-8")
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
