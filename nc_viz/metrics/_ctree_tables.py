"""Lookup tables of `_ctree` over the 8-bit mask of a pixel's already added neighbours."""
from __future__ import annotations

import numpy as np


def neighbour_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Lookup tables over the 8-bit mask of a pixel's present neighbours (bit i: ring position i).

    `groups8`, `groups4` `(256, 5)`: the number of groups of present neighbours already connected
    among themselves (8-connectivity; 4-connectivity of the 4-neighbours, linked through a present
    diagonal), then one ring position per group. `credit`: the 2 x 2 windows around the pixel with
    at least 2 of their 3 other pixels present (half-units of contour area). `euler`: 4 x the
    change of the foreground's Euler number (8-connected, Gray's 2 x 2 formula) when the pixel
    leaves the foreground, the present neighbours being background."""
    ring = [(-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1)]
    blocks = ((7, 0, 6), (1, 0, 2), (3, 2, 4), (5, 4, 6))          # windows around p, its diagonal first
    groups8 = np.full((256, 5), -1, np.int64)
    groups4 = np.full((256, 5), -1, np.int64)
    credit = np.zeros(256, np.int64)
    euler = np.zeros(256, np.int64)

    def touching(i: int, j: int, mask: int) -> bool:              # 8-adjacent ring positions
        return max(abs(ring[i][0] - ring[j][0]), abs(ring[i][1] - ring[j][1])) == 1

    def linked4(i: int, j: int, mask: int) -> bool:               # 4-neighbours i < j, diagonal between
        if (j - i) % 8 not in (2, 6):
            return False
        diagonal = (i + 1) % 8 if (j - i) % 8 == 2 else (j + 1) % 8
        return bool(mask >> diagonal & 1)

    for mask in range(256):
        present = [i for i in range(8) if mask >> i & 1]
        for table, members, linked in ((groups8, present, touching),
                                       (groups4, [i for i in present if i % 2 == 0], linked4)):
            label = {i: i for i in members}
            for i in members:
                for j in members:
                    if i < j and linked(i, j, mask):
                        old, new = label[j], label[i]
                        label = {k: (new if v == old else v) for k, v in label.items()}
            firsts = sorted({min(k for k in members if label[k] == v) for v in label.values()})
            table[mask, 0] = len(firsts)
            table[mask, 1:1 + len(firsts)] = firsts
        credit[mask] = sum(sum(mask >> i & 1 for i in block) >= 2 for block in blocks)
        for block in blocks:
            others = {i for i in block if not mask >> i & 1}               # foreground neighbours
            diagonals = [("p", block[0]), tuple(sorted(block[1:]))]
            with_p, without_p = others | {"p"}, others
            euler[mask] += (_gray(with_p, diagonals) - _gray(without_p, diagonals))
    return groups8, groups4, credit, euler


def _gray(corners: set, diagonals: list) -> int:
    """Gray's contribution of one 2 x 2 window with these foreground corners (8-connectivity), x 4."""
    if len(corners) == 1:
        return 1
    if len(corners) == 3:
        return -1
    if len(corners) == 2 and any(corners == set(d) for d in diagonals):
        return -2
    return 0
