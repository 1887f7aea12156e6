"""PNG files read chunk by chunk: one walker (`chunks`) for both readers, whether a file is whole
(`png_intact`: every chunk's CRC checked, up to IEND; a batch run with skip_existing keeps a figure only when
it is intact, not merely when its tail looks right) and the tEXt notes before the image data
(`figures.raster.png_text`, the reader of what `encode_png` writes)."""
from __future__ import annotations

import os
import struct
import zlib
from typing import BinaryIO, Collection, Iterator

SIGNATURE = b"\x89PNG\r\n\x1a\n"


def chunks(handle: BinaryIO, stop_before: Collection[bytes] = (),
           max_length: int | None = None) -> Iterator[tuple[bytes, bytes, bool]]:
    """`(kind, body, whole)` of each chunk of the PNG open in `handle`, read from its start.

    `whole` is False when the body or its CRC is cut short or the CRC is wrong. Nothing is
    yielded when the signature is wrong. The walk ends at the end of the file, at a cut chunk
    head, and, without reading its body, before a chunk whose kind is in `stop_before` or whose
    length is above `max_length`. After IEND the handle is left just past its CRC.
    """
    if handle.read(8) != SIGNATURE:
        return
    while True:
        head = handle.read(8)
        if len(head) < 8:
            return
        length, kind = struct.unpack(">I4s", head)
        if kind in stop_before or (max_length is not None and length > max_length):
            return
        body = handle.read(length)
        crc = handle.read(4)
        whole = len(body) == length and len(crc) == 4 and struct.unpack(">I", crc)[0] == zlib.crc32(kind + body)
        yield kind, body, whole
        if kind == b"IEND":
            return


def png_intact(path: str | os.PathLike) -> bool:
    """True when `path` is a PNG whose chunks all have the right CRC and which ends at IEND."""
    try:
        with open(path, "rb") as handle:
            for kind, _, whole in chunks(handle):
                if not whole:
                    return False
                if kind == b"IEND":
                    return handle.read(1) == b""
            return False
    except OSError:
        return False
