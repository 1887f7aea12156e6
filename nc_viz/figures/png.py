"""Is a PNG file whole? Every chunk's CRC checked, up to IEND (issue 9: `skip_existing`
keeps a figure only when it is intact, not merely when its tail looks right)."""
from __future__ import annotations

import os
import struct
import zlib

_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_intact(path: str | os.PathLike) -> bool:
    """True when `path` is a PNG whose chunks all have the right CRC and which ends at IEND."""
    try:
        with open(path, "rb") as handle:
            if handle.read(8) != _SIGNATURE:
                return False
            while True:
                head = handle.read(8)
                if len(head) < 8:
                    return False
                length, kind = struct.unpack(">I4s", head)
                body = handle.read(length)
                crc = handle.read(4)
                if len(body) < length or len(crc) < 4 or struct.unpack(">I", crc)[0] != zlib.crc32(kind + body):
                    return False
                if kind == b"IEND":
                    return handle.read(1) == b""
    except OSError:
        return False
