"""Component trees of a uint8 map: the boxes and areas of every contour `cv2.findContours`
would find at every threshold, in three compiled union-find passes (numba).

What the passes rely on (OpenCV's Suzuki-Abe tracing, RETR_TREE, CHAIN_APPROX_SIMPLE; checked
against OpenCV on random binary images in the tests), for the binarisation `value > level`:
- one outer contour per 8-connected foreground component; its `boundingRect` is the component's
  bounding box;
- one hole contour per 4-connected background component that does not touch the image border
  (outside the image is background); its `boundingRect` is the hole's bounding box widened by
  one pixel on every side;
- an outer contour's `contourArea` (the shoelace area of the polygon through the traced pixel
  centres) is, over the 2 x 2 windows of the component with its holes filled, the number of
  windows with all four pixels in it plus half the number with three (a window with three or
  four pixels of a set lies in one 8-connected component of it);
- holes and the components inside them have no more area than the outer contour around them,
  which comes before them in RETR_TREE's order, so V1's largest contour is the outer contour of
  a component of the filled map `filled = value` raised to the level at which each pixel
  joins the background connected to the outside: `filled > level` is the foreground with its
  holes filled (the reconstruction by erosion of the map from its border).

Pass 1 (`_lower_pass`) adds pixels from low to high values (4-connectivity): hole boxes and
`filled`. Pass 2 and 3 (`_upper_pass`) add pixels from high to low (8-connectivity): the
components of the map (all outer boxes) and of `filled` (areas and the largest one's box).
Each window's area is credited to its lowest and second-lowest pixel (half a unit each), so a
component's doubled area is the sum of its pixels' credits, merged with the union-find.
"""
from __future__ import annotations

import numpy as np
from numba import njit

_CACHE = True


@njit(cache=_CACHE, nogil=True)
def _padded_order(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The pixels, as indices into the image padded by one pixel on every side, sorted by value
    (a counting sort); each value's start in that order; each padded index's row and column."""
    height, width = image.shape
    padded_width = width + 2
    starts = np.zeros(257, np.int64)
    for y in range(height):
        for x in range(width):
            starts[image[y, x] + 1] += 1
    for v in range(256):
        starts[v + 1] += starts[v]
    position = starts[:256].copy()
    order = np.empty(height * width, np.int32)
    row = np.zeros((height + 2) * padded_width, np.int32)
    col = np.zeros((height + 2) * padded_width, np.int32)
    for y in range(height):
        for x in range(width):
            v = image[y, x]
            p = (y + 1) * padded_width + x + 1
            order[position[v]] = p
            position[v] += 1
            row[p] = y
            col[p] = x
    return order, starts, row, col


@njit(cache=_CACHE, nogil=True)
def _find(parent: np.ndarray, p: int) -> int:
    """The root of `p`, halving the path on the way."""
    while parent[p] != p:
        parent[p] = parent[parent[p]]
        p = parent[p]
    return p


@njit(cache=_CACHE, nogil=True)
def _best_iou(x0: int, y0: int, x1: int, y1: int, gt: np.ndarray) -> float:
    """The best IoU of one box with the ground-truth boxes, computed as `multiple_iou` does."""
    best = 0.0
    area = (x1 - x0 + 1) * (y1 - y0 + 1)
    for g in range(gt.shape[0]):
        inter = (max(0, min(x1, gt[g, 2]) - max(x0, gt[g, 0]) + 1)
                 * max(0, min(y1, gt[g, 3]) - max(y0, gt[g, 1]) + 1))
        denominator = area + (gt[g, 2] - gt[g, 0] + 1) * (gt[g, 3] - gt[g, 1] + 1) - inter
        iou = inter / denominator if denominator > 0 else 0.0
        if iou > best:
            best = iou
    return best


@njit(cache=_CACHE, nogil=True)
def _drop_root(roots: np.ndarray, where: np.ndarray, n_roots: int, r: int) -> int:
    i = where[r]
    last = roots[n_roots - 1]
    roots[i] = last
    where[last] = i
    return n_roots - 1


@njit(cache=_CACHE, nogil=True)
def _merge_boxes(box: np.ndarray, a: int, b: int) -> None:
    box[a, 0] = min(box[a, 0], box[b, 0])
    box[a, 1] = min(box[a, 1], box[b, 1])
    box[a, 2] = max(box[a, 2], box[b, 2])
    box[a, 3] = max(box[a, 3], box[b, 3])


@njit(cache=_CACHE, nogil=True)
def _ring_offsets(padded_width: int) -> tuple[int, ...]:
    """Index offsets of the 8 neighbours in ring order N, NE, E, SE, S, SW, W, NW."""
    return (-padded_width, -padded_width + 1, 1, padded_width + 1, padded_width, padded_width - 1, -1,
            -padded_width - 1)


def _neighbour_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Lookup tables over the 8-bit mask of a pixel's present neighbours (bit i: ring position i).

    `groups8`, `groups4` `(256, 5)`: the number of groups of present neighbours already connected
    among themselves (8-connectivity; 4-connectivity of the 4-neighbours, linked through a present
    diagonal), then one ring position per group. `credit`: the 2 x 2 windows around the pixel with
    at least 2 of their 3 other pixels present (half-units of contour area). `euler`: 4 x the
    change of the foreground's Euler number (8-connected, Gray's 2 x 2 formula) when the pixel
    leaves the foreground, the present neighbours being background."""
    ring = [(-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1)]
    blocks = ((7, 0, 6), (0, 1, 2), (2, 3, 4), (4, 5, 6))          # windows around p; [0]: p's diagonal
    groups8 = np.full((256, 5), -1, np.int64)
    groups4 = np.full((256, 5), -1, np.int64)
    credit = np.zeros(256, np.int64)
    euler = np.zeros(256, np.int64)

    for mask in range(256):
        present = [i for i in range(8) if mask >> i & 1]
        for table, members, linked in (
                (groups8, present, lambda i, j: max(abs(ring[i][0] - ring[j][0]), abs(ring[i][1] - ring[j][1])) == 1),
                (groups4, [i for i in present if i % 2 == 0],
                 lambda i, j: (j - i) % 8 in (2, 6) and (mask >> ((i + 1) % 8 if (j - i) % 8 == 2 else (j + 1) % 8) & 1))):
            label = {i: i for i in members}
            for i in members:
                for j in members:
                    if i < j and linked(i, j):
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


@njit(cache=_CACHE, nogil=True)
def _present(parent: np.ndarray, p: int, offsets: tuple) -> int:
    mask = 0
    for d in range(8):
        if parent[p + offsets[d]] >= 0:
            mask |= 1 << d
    return mask


@njit(cache=_CACHE, nogil=True)
def _extend_box(box: np.ndarray, r: int, x: int, y: int) -> None:
    box[r, 0] = min(box[r, 0], x)
    box[r, 1] = min(box[r, 1], y)
    box[r, 2] = max(box[r, 2], x)
    box[r, 3] = max(box[r, 3], y)


@njit(cache=_CACHE, nogil=True)
def _lower_pass(order: np.ndarray, starts: np.ndarray, row: np.ndarray, col: np.ndarray, height: int,
                width: int, groups: np.ndarray, euler: np.ndarray, query: np.ndarray, gt: np.ndarray,
                best: np.ndarray, n_components: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Background components (4-connected) from low to high values, at every queried level: the
    holes' best IoU (max-combined into `best`) and the number of foreground components (the Euler
    number plus the holes). Returns the pixels in the order in which they join the background
    connected to the outside, and the start of each level there (the filled map's order)."""
    padded_width = width + 2
    n = (height + 2) * padded_width
    parent = np.full(n, -1, np.int32)
    size = np.zeros(n, np.int32)
    box = np.empty((n, 4), np.int32)
    chain = np.full(n, -1, np.int32)          # each hole's pixels as a linked list
    tail = np.empty(n, np.int32)
    roots = np.empty(n, np.int32)             # the holes
    where = np.empty(n, np.int32)
    n_roots = 0
    outside = 0                               # the padding: one component, the outside
    for y in range(height + 2):
        for x in range(padded_width):
            if y == 0 or x == 0 or y == height + 1 or x == width + 1:
                parent[y * padded_width + x] = outside
    size[outside] = n
    filled_order = np.empty(height * width, np.int32)
    filled_starts = np.zeros(257, np.int64)
    n_filled = 0
    euler4 = 4                                # the whole image: one component, no hole
    offsets = _ring_offsets(padded_width)
    for u in range(256):
        for k in range(starts[u], starts[u + 1]):
            p = order[k]
            mask = _present(parent, p, offsets)
            euler4 -= euler[mask]
            n_groups = groups[mask, 0]
            if n_groups == 0:                 # a new hole
                parent[p] = p
                size[p] = 1
                box[p, 0] = col[p]
                box[p, 1] = row[p]
                box[p, 2] = col[p]
                box[p, 3] = row[p]
                tail[p] = p
                roots[n_roots] = p
                where[p] = n_roots
                n_roots += 1
                continue
            r = _find(parent, p + offsets[groups[mask, 1]])
            parent[p] = r
            if r == outside:
                filled_order[n_filled] = p
                n_filled += 1
            else:
                size[r] += 1
                _extend_box(box, r, col[p], row[p])
                chain[tail[r]] = p
                tail[r] = p
            for g in range(2, n_groups + 1):
                rq = _find(parent, p + offsets[groups[mask, g]])
                if rq == r:
                    continue
                if rq == outside or r == outside:     # a hole joins the outside at level u
                    inner = r if rq == outside else rq
                    j = inner
                    while j >= 0:
                        filled_order[n_filled] = j
                        n_filled += 1
                        j = chain[j]
                    n_roots = _drop_root(roots, where, n_roots, inner)
                    parent[inner] = outside
                    r = outside
                    continue
                a, b = (r, rq) if size[r] >= size[rq] else (rq, r)
                n_roots = _drop_root(roots, where, n_roots, b)
                parent[b] = a
                size[a] += size[b]
                _merge_boxes(box, a, b)
                chain[tail[a]] = b
                tail[a] = tail[b]
                r = a
        filled_starts[u + 1] = n_filled
        if query[u]:
            n_components[u] = euler4 // 4 + n_roots
            for i in range(n_roots):
                r = roots[i]
                iou = _best_iou(box[r, 0] - 1, box[r, 1] - 1, min(box[r, 2] + 2, width - 1),
                                min(box[r, 3] + 2, height - 1), gt)
                if iou > best[u]:
                    best[u] = iou
    return filled_order, filled_starts


@njit(cache=_CACHE, nogil=True)
def _upper_pass(order: np.ndarray, starts: np.ndarray, row: np.ndarray, col: np.ndarray, height: int,
                width: int, groups: np.ndarray, credit: np.ndarray, query: np.ndarray, gt: np.ndarray,
                best: np.ndarray, largest: np.ndarray, ambiguous: np.ndarray, n_components: np.ndarray,
                with_area: bool) -> None:
    """8-connected components from high to low values, at every queried level: their number
    (`n_components`), their best IoU (max-combined into `best`) and, `with_area`, the IoU of the
    one of largest contour area (`largest`) and whether another one of that area has another IoU
    (`ambiguous`)."""
    padded_width = width + 2
    n = (height + 2) * padded_width
    parent = np.full(n, -1, np.int32)
    size = np.zeros(n, np.int32)
    box = np.empty((n, 4), np.int32)
    area = np.zeros(n, np.int64)              # twice the contour area
    roots = np.empty(n, np.int32)
    where = np.empty(n, np.int32)
    n_roots = 0
    offsets = _ring_offsets(padded_width)
    lowest = 0
    while lowest < 256 and not query[lowest]:
        lowest += 1
    for u in range(255, lowest, -1):
        for k in range(starts[u], starts[u + 1]):
            p = order[k]
            mask = _present(parent, p, offsets)
            n_groups = groups[mask, 0]
            if n_groups == 0:
                parent[p] = p
                size[p] = 1
                box[p, 0] = col[p]
                box[p, 1] = row[p]
                box[p, 2] = col[p]
                box[p, 3] = row[p]
                area[p] = 0
                roots[n_roots] = p
                where[p] = n_roots
                n_roots += 1
                continue
            r = _find(parent, p + offsets[groups[mask, 1]])
            parent[p] = r
            size[r] += 1
            _extend_box(box, r, col[p], row[p])
            if with_area:       # each 2 x 2 window around p that now has 3, then 4 pixels: half a unit
                area[r] += credit[mask]
            for g in range(2, n_groups + 1):
                rq = _find(parent, p + offsets[groups[mask, g]])
                if rq == r:
                    continue
                a, b = (r, rq) if size[r] >= size[rq] else (rq, r)
                n_roots = _drop_root(roots, where, n_roots, b)
                parent[b] = a
                size[a] += size[b]
                area[a] += area[b]
                _merge_boxes(box, a, b)
                r = a
        level = u - 1
        if not query[level]:
            continue
        n_components[level] = n_roots
        top_area = -1
        for i in range(n_roots):
            r = roots[i]
            iou = _best_iou(box[r, 0], box[r, 1], min(box[r, 2] + 1, width - 1),
                            min(box[r, 3] + 1, height - 1), gt)
            if iou > best[level]:
                best[level] = iou
            if with_area:
                if area[r] > top_area:
                    top_area = area[r]
                    largest[level] = iou
                    ambiguous[level] = False
                elif area[r] == top_area and iou != largest[level]:
                    ambiguous[level] = True


ISLAND_LEVELS_FOR_A_PASS = 8


def level_ious(image: np.ndarray, query: np.ndarray, gt: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For every level `l` with `query[l]` (the foreground `image > l` must not be empty):
    the best IoU of the contours' boxes (V2), that of the largest contour's box (V1), whether V1
    is undecided (contours of equal largest area with different IoUs: RETR_TREE's order decides),
    and whether V2 misses the boxes of components inside holes (at no more than
    `ISLAND_LEVELS_FOR_A_PASS` levels; with more, a pass over the map's own components adds them).
    `image` uint8 `(H, W)`, `gt` int64 `(n, 4)`."""
    return _level_ious(image, query, gt, _GROUPS8, _GROUPS4, _CREDIT, _EULER, ISLAND_LEVELS_FOR_A_PASS)


@njit(cache=_CACHE, nogil=True)
def _level_ious(image: np.ndarray, query: np.ndarray, gt: np.ndarray, groups8: np.ndarray,
                groups4: np.ndarray, credit: np.ndarray, euler: np.ndarray, most_islands: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    height, width = image.shape
    best = np.zeros(256)
    largest = np.zeros(256)
    ambiguous = np.zeros(256, np.bool_)
    n_components = np.zeros(256, np.int64)
    n_top = np.zeros(256, np.int64)
    order, starts, row, col = _padded_order(image)
    filled_order, filled_starts = _lower_pass(order, starts, row, col, height, width, groups4, euler, query,
                                              gt, best, n_components)
    _upper_pass(filled_order, filled_starts, row, col, height, width, groups8, credit, query, gt,
                best, largest, ambiguous, n_top, True)
    islands = n_components > n_top                 # components inside holes
    if islands.sum() > most_islands:
        _upper_pass(order, starts, row, col, height, width, groups8, credit, query, gt, best, largest,
                    ambiguous, n_components, False)
        islands[:] = False
    return best, largest, ambiguous, islands


_GROUPS8, _GROUPS4, _CREDIT, _EULER = _neighbour_tables()
