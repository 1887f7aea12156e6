"""Rank 0's merge of the ranks' records files into one, in image order, row by row."""
from __future__ import annotations

import csv
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from ...core.io import _create_temporary
from .records import TEXT, csv_line


def merge_records(parts: Sequence[Path], target: Path, images: int, failed: Mapping[int, str],
                  rows_per_image: int) -> None:
    """Interleave the ranks' record files as one process would have written them.

    Rank r scored the images at positions r, r + world, ...; each image that did not fail has
    `rows_per_image` consecutive rows (one per model) in its rank's file, in position order.
    The result is written atomically (temporary file, then rename).
    """
    world = len(parts)
    handles = [open(p, **TEXT) for p in parts]
    try:
        readers: list[Iterator[list[str]]] = [csv.reader(h) for h in handles]
        headers = [next(r) for r in readers]
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _create_temporary(target)
        try:
            with os.fdopen(fd, "w", **TEXT) as out:
                out.write(csv_line(headers[0]))
                for position in range(images):
                    if position not in failed:
                        for _ in range(rows_per_image):
                            out.write(csv_line(next(readers[position % world])))
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    finally:
        for handle in handles:
            handle.close()
