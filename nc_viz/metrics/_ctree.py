"""Component trees of a uint8 map: the boxes and areas of the contours `cv2.findContours`
would find at every threshold, in compiled union-find passes (numba; `box_correctness` uses it).

What the passes rely on (OpenCV's Suzuki-Abe tracing, RETR_TREE, CHAIN_APPROX_SIMPLE; checked
against OpenCV's own loop on many kinds of maps in tests/test_box_tree.py), for `value > level`:
- one outer contour per 8-connected foreground component; its `boundingRect` is the component's
  bounding box;
- one hole contour per 4-connected background component that does not touch the image border
  (outside the image is background); its `boundingRect` is the hole's bounding box widened by
  one pixel on every side;
- an outer contour's `contourArea` (the shoelace area of the polygon through the traced pixel
  centres) is, over the 2 x 2 windows of the component with its holes filled, the number of
  windows with all four pixels in it plus half the number with three (a window with three or
  four pixels of a set lies in one 8-connected component of it);
- holes and the components inside them ("islands") have no more area than the outer contour
  around them, which comes before them in RETR_TREE's order, so V1's largest contour is the outer
  contour of a component of the filled map: each pixel raised to the level at which it joins the
  background connected to the outside (`filled > level` is the foreground with its holes filled).

The lower pass adds pixels from low to high values (4-connectivity): hole boxes, the filled map,
and the Euler number of the foreground (Gray's 2 x 2 formula), so that the number of foreground
components is known at every level. The upper pass adds the filled map's pixels from high to low
(8-connectivity): the boxes of the components that are not inside a hole, their areas (each
pixel credits half a unit per 2 x 2 window it completes to 3 or 4 pixels) and the largest one.
Levels with islands (more components than the upper pass found) are reported; where they are
many, a second upper pass over the map itself adds every outer box. Equal largest areas with
different IoUs are reported too (RETR_TREE's order decides them; `box_correctness` asks OpenCV).
Pixels are added in raster order within a value, so each one's mask of already added neighbours
comes from a raster pass; one lookup per mask gives the groups to join.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ._ctree_tables import neighbour_tables

_CACHE = True


@njit(cache=_CACHE, nogil=True, error_model="numpy")
def float64_to_uint8(scoremap: np.ndarray) -> tuple[np.ndarray, bool]:
    """`(scoremap * 255).astype(np.uint8)` of a C-contiguous float64 map in one branch-free pass
    (the same products and truncation), and whether every value was in [0, 1] (False with a NaN;
    the image is then not to be used)."""
    height, width = scoremap.shape
    values = scoremap.ravel()
    image = np.empty(values.size, np.uint8)
    valid = True
    for i in range(values.size):
        v = values[i]
        valid &= (v >= 0.0) & (v <= 1.0)
        image[i] = np.uint8(v * 255.0)
    return image.reshape((height, width)), valid


@njit(cache=_CACHE, nogil=True, error_model="numpy")
def _sorted_pixels(image: np.ndarray, upper: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`_sorted_padded` of the image padded with -1 on every side."""
    height, width = image.shape
    padded = np.full((height + 2, width + 2), -1, np.int16)
    counts = np.zeros(256, np.int64)
    for y in range(height):
        for x in range(width):
            padded[y + 1, x + 1] = image[y, x]
            counts[image[y, x]] += 1
    return _sorted_padded(padded, counts, upper)


@njit(cache=_CACHE, nogil=True, error_model="numpy")
def _sorted_padded(padded: np.ndarray, counts: np.ndarray, upper: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pixels of a map padded with -1 (`counts`: its histogram) sorted by value, as
    `row << 16 | column` (a counting sort, raster order within a value); each value's start; and
    for each pixel (padded index) the 8-bit mask of the neighbours added before it when pixels are
    added in that order, from high to low values if `upper`, else from low to high (outside the
    image: never added if `upper`, else always)."""
    height, width = padded.shape[0] - 2, padded.shape[1] - 2
    padded_width = width + 2
    starts = np.zeros(257, np.int64)
    for v in range(256):
        starts[v + 1] = starts[v] + counts[v]
    position = starts[:256].copy()
    order = np.empty(height * width, np.uint32)
    for y in range(height):
        for x in range(width):
            v = padded[y + 1, x + 1]
            order[position[v]] = (y << 16) | x
            position[v] += 1
    masks = np.zeros((height + 2) * padded_width, np.uint8)
    for y in range(1, height + 1):
        _row_masks(padded[y - 1], padded[y], padded[y + 1], masks[y * padded_width:(y + 1) * padded_width],
                   width, upper)
    return order, starts, masks


@njit(cache=_CACHE, nogil=True, error_model="numpy")
def _row_masks(above: np.ndarray, here: np.ndarray, below: np.ndarray, out: np.ndarray, width: int,
               upper: bool) -> None:
    """`_sorted_pixels`'s masks of one row (padded rows in, branch-free so that it vectorises)."""
    if upper:           # added before: value above, or equal and before in raster order
        for x in range(1, width + 1):
            v = here[x]
            out[x] = ((above[x] >= v) | ((above[x + 1] >= v) << 1) | ((here[x + 1] > v) << 2)
                      | ((below[x + 1] > v) << 3) | ((below[x] > v) << 4) | ((below[x - 1] > v) << 5)
                      | ((here[x - 1] >= v) << 6) | ((above[x - 1] >= v) << 7))
    else:               # added before: value below, or equal and before; the padding (-1) always
        for x in range(1, width + 1):
            v = here[x]
            out[x] = ((above[x] <= v) | ((above[x + 1] <= v) << 1) | ((here[x + 1] < v) << 2)
                      | ((below[x + 1] < v) << 3) | ((below[x] < v) << 4) | ((below[x - 1] < v) << 5)
                      | ((here[x - 1] <= v) << 6) | ((above[x - 1] <= v) << 7))


@njit(cache=_CACHE, nogil=True, error_model="numpy")
def _find(up: np.ndarray, a: int) -> int:
    """The root node of node `a`, halving the path on the way."""
    while up[a] != a:
        up[a] = up[up[a]]
        a = up[a]
    return a


@njit(cache=_CACHE, nogil=True, error_model="numpy")
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


@njit(cache=_CACHE, nogil=True, error_model="numpy")
def _new_root(node: np.ndarray, up: np.ndarray, label: np.ndarray, roots: np.ndarray, where: np.ndarray,
              n_roots: int, a: int, x: int, y: int, p: int) -> int:
    """Node `a` as a new root: pixel `p` at (x, y) alone (box, size 1, area 0). Returns the number
    of roots."""
    up[a] = a
    node[a, 0] = x
    node[a, 1] = y
    node[a, 2] = x
    node[a, 3] = y
    node[a, 4] = 1
    node[a, 5] = 0
    label[p] = a
    roots[n_roots] = a
    where[a] = n_roots
    return n_roots + 1


@njit(cache=_CACHE, nogil=True, error_model="numpy")
def _drop_root(roots: np.ndarray, where: np.ndarray, n_roots: int, r: int) -> int:
    i = where[r]
    last = roots[n_roots - 1]
    roots[i] = last
    where[last] = i
    return n_roots - 1


@njit(cache=_CACHE, nogil=True, error_model="numpy")
def _group_offsets(groups: np.ndarray, padded_width: int) -> np.ndarray:
    """`groups` with each ring position replaced by its index offset in the padded image
    (ring order N, NE, E, SE, S, SW, W, NW)."""
    ring = np.array([-padded_width, -padded_width + 1, 1, padded_width + 1, padded_width, padded_width - 1,
                     -1, -padded_width - 1])
    out = np.zeros_like(groups)
    for mask in range(256):
        out[mask, 0] = groups[mask, 0]
        for g in range(1, groups[mask, 0] + 1):
            out[mask, g] = ring[groups[mask, g]]
    return out


@njit(cache=_CACHE, nogil=True, error_model="numpy")
def _merge(node: np.ndarray, up: np.ndarray, roots: np.ndarray, where: np.ndarray, n_roots: int,
           r: int, rq: int) -> tuple[int, int]:
    """Union by size of root nodes `r` and `rq`: boxes, sizes and areas summed. Returns the new root
    and the number of roots left."""
    a, b = (r, rq) if node[r, 4] >= node[rq, 4] else (rq, r)
    n_roots = _drop_root(roots, where, n_roots, b)
    up[b] = a
    node[a, 0] = min(node[a, 0], node[b, 0])
    node[a, 1] = min(node[a, 1], node[b, 1])
    node[a, 2] = max(node[a, 2], node[b, 2])
    node[a, 3] = max(node[a, 3], node[b, 3])
    node[a, 4] += node[b, 4]
    node[a, 5] += node[b, 5]
    return a, n_roots


@njit(cache=_CACHE, nogil=True, error_model="numpy")
def _lower_pass(order: np.ndarray, starts: np.ndarray, masks: np.ndarray, height: int,
                width: int, groups: np.ndarray, euler: np.ndarray, query: np.ndarray, gt: np.ndarray,
                best: np.ndarray, n_components: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Background components (4-connected) from low to high values, at every queried level: the
    holes' best IoU (max-combined into `best`) and the number of foreground components (the Euler
    number plus the holes). Returns the filled map (the level at which each pixel joins the
    background connected to the outside; padded with -1) and its histogram."""
    padded_width = width + 2
    label = np.full((height + 2) * padded_width, -1, np.int32)     # pixel -> a node of its component
    outside = 0                               # the padding: one node, the outside
    for x in range(padded_width):
        label[x] = outside
        label[(height + 1) * padded_width + x] = outside
    for y in range(height + 2):
        label[y * padded_width] = outside
        label[y * padded_width + width + 1] = outside
    n_max = height * width + 1
    up = np.empty(n_max, np.int32)
    node = np.empty((n_max, 8), np.int32)     # x0, y0, x1, y1, size, 0, first and last pixel
    up[outside] = outside
    n_nodes = 1
    chain = np.empty(label.size, np.int32)    # next pixel of the same hole, -1 at the end
    roots = np.empty(n_max, np.int32)         # the holes
    where = np.empty(n_max, np.int32)
    n_roots = 0
    filled = np.full((height + 2, padded_width), -1, np.int16)
    counts = np.zeros(256, np.int64)
    euler4 = 4                                # the whole image: one component, no hole
    offsets = _group_offsets(groups, padded_width)
    for u in range(256):
        for k in range(starts[u], starts[u + 1]):
            y = np.int64(order[k] >> 16)
            x = np.int64(order[k] & 0xFFFF)
            p = (y + 1) * padded_width + x + 1
            mask = masks[p]
            euler4 -= euler[mask]
            n_groups = offsets[mask, 0]
            if n_groups == 0:                 # a new hole
                n_roots = _new_root(node, up, label, roots, where, n_roots, n_nodes, x, y, p)
                node[n_nodes, 6] = p
                node[n_nodes, 7] = p
                chain[p] = -1
                n_nodes += 1
                continue
            r = _find(up, label[p + offsets[mask, 1]])
            label[p] = r
            if r == outside:
                filled[y + 1, x + 1] = u
                counts[u] += 1
            else:
                node[r, 0] = min(node[r, 0], x)
                node[r, 1] = min(node[r, 1], y)
                node[r, 2] = max(node[r, 2], x)
                node[r, 3] = max(node[r, 3], y)
                node[r, 4] += 1
                chain[p] = -1
                chain[node[r, 7]] = p
                node[r, 7] = p
            for g in range(2, n_groups + 1):
                rq = _find(up, label[p + offsets[mask, g]])
                if rq == r:
                    continue
                if rq == outside or r == outside:     # a hole joins the outside at level u
                    inner = r if rq == outside else rq
                    j = node[inner, 6]
                    while j >= 0:
                        row = j // padded_width
                        filled[row, j - row * padded_width] = u
                        counts[u] += 1
                        j = chain[j]
                    n_roots = _drop_root(roots, where, n_roots, inner)
                    up[inner] = outside
                    r = outside
                    continue
                first, last = node[r, 6], node[rq, 7]
                tail, head = node[r, 7], node[rq, 6]
                if node[r, 4] < node[rq, 4]:
                    first, last, tail, head = node[rq, 6], node[r, 7], node[rq, 7], node[r, 6]
                chain[tail] = head
                r, n_roots = _merge(node, up, roots, where, n_roots, r, rq)
                node[r, 6] = first
                node[r, 7] = last
        if query[u]:
            n_components[u] = euler4 // 4 + n_roots
            for i in range(n_roots):
                r = roots[i]
                iou = _best_iou(node[r, 0] - 1, node[r, 1] - 1, min(node[r, 2] + 2, width - 1),
                                min(node[r, 3] + 2, height - 1), gt)
                if iou > best[u]:
                    best[u] = iou
    return filled, counts


@njit(cache=_CACHE, nogil=True, error_model="numpy")
def _upper_pass(order: np.ndarray, starts: np.ndarray, masks: np.ndarray, height: int, width: int,
                groups: np.ndarray, credit: np.ndarray, query: np.ndarray, gt: np.ndarray, best: np.ndarray,
                largest: np.ndarray, ambiguous: np.ndarray, n_components: np.ndarray) -> None:
    """8-connected components from high to low values, at every queried level: their number
    (`n_components`), their best IoU (max-combined into `best`), the IoU of the one of largest
    contour area (`largest`) and whether another one of that area has another IoU (`ambiguous`)."""
    padded_width = width + 2
    label = np.full((height + 2) * padded_width, -1, np.int32)     # pixel -> a node of its component
    n_max = height * width
    up = np.empty(n_max, np.int32)
    node = np.empty((n_max, 8), np.int32)     # x0, y0, x1, y1, size, twice the contour area
    n_nodes = 0
    roots = np.empty(n_max, np.int32)
    where = np.empty(n_max, np.int32)
    n_roots = 0
    offsets = _group_offsets(groups, padded_width)
    lowest = 0
    while lowest < 256 and not query[lowest]:
        lowest += 1
    for u in range(255, lowest, -1):
        for k in range(starts[u], starts[u + 1]):
            y = np.int64(order[k] >> 16)
            x = np.int64(order[k] & 0xFFFF)
            p = (y + 1) * padded_width + x + 1
            mask = masks[p]
            n_groups = offsets[mask, 0]
            if n_groups == 0:
                n_roots = _new_root(node, up, label, roots, where, n_roots, n_nodes, x, y, p)
                n_nodes += 1
                continue
            r = _find(up, label[p + offsets[mask, 1]])
            label[p] = r
            if x < node[r, 0]:
                node[r, 0] = x
            elif x > node[r, 2]:
                node[r, 2] = x
            if y < node[r, 1]:
                node[r, 1] = y
            elif y > node[r, 3]:
                node[r, 3] = y
            node[r, 4] += 1
            node[r, 5] += credit[mask]      # each 2 x 2 window now with 3, then 4 pixels: half a unit
            for g in range(2, n_groups + 1):
                rq = _find(up, label[p + offsets[mask, g]])
                if rq != r:
                    r, n_roots = _merge(node, up, roots, where, n_roots, r, rq)
        level = u - 1
        if not query[level]:
            continue
        n_components[level] = n_roots
        top_area = -1
        for i in range(n_roots):
            r = roots[i]
            iou = _best_iou(node[r, 0], node[r, 1], min(node[r, 2] + 1, width - 1),
                            min(node[r, 3] + 1, height - 1), gt)
            if iou > best[level]:
                best[level] = iou
            if node[r, 5] > top_area:
                top_area = node[r, 5]
                largest[level] = iou
                ambiguous[level] = False
            elif node[r, 5] == top_area and iou != largest[level]:
                ambiguous[level] = True


ISLAND_LEVELS_FOR_A_PASS = 8


def level_ious(image: np.ndarray, query: np.ndarray, gt: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For every level `l` with `query[l]` (the foreground `image > l` must not be empty):
    the best IoU of the contours' boxes (V2), that of the largest contour's box (V1) (elsewhere
    that of the box `[0, 0, 0, 0]` both, as the reference's for no contour), whether V1
    is undecided (contours of equal largest area with different IoUs: RETR_TREE's order decides),
    and whether V2 misses the boxes of components inside holes (at no more than
    `ISLAND_LEVELS_FOR_A_PASS` levels; with more, a pass over the map's own components adds them).
    `image` uint8 `(H, W)` (under 65536 pixels a side), `gt` int64 `(n, 4)`."""
    if max(image.shape) >= 1 << 16:
        raise ValueError(f"maps must be under 65536 pixels a side, got {image.shape}")
    return _level_ious(image, query, gt, _GROUPS8, _GROUPS4, _CREDIT, _EULER, ISLAND_LEVELS_FOR_A_PASS)


@njit(cache=_CACHE, nogil=True, error_model="numpy")
def _level_ious(image: np.ndarray, query: np.ndarray, gt: np.ndarray, groups8: np.ndarray,
                groups4: np.ndarray, credit: np.ndarray, euler: np.ndarray, most_islands: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    height, width = image.shape
    best = np.zeros(256)
    largest = np.zeros(256)
    ambiguous = np.zeros(256, np.bool_)
    n_components = np.zeros(256, np.int64)
    n_top = np.zeros(256, np.int64)
    no_box = _best_iou(0, 0, 0, 0, gt)             # no contour: the box [0, 0, 0, 0]
    for level in range(256):
        if not query[level]:
            best[level] = no_box
            largest[level] = no_box
    if not query.any():
        return best, largest, ambiguous, n_components > n_top
    order, starts, masks = _sorted_pixels(image, False)
    filled, counts = _lower_pass(order, starts, masks, height, width, groups4, euler, query, gt, best,
                                 n_components)
    filled_order, filled_starts, filled_masks = _sorted_padded(filled, counts, True)
    _upper_pass(filled_order, filled_starts, filled_masks, height, width, groups8, credit, query, gt,
                best, largest, ambiguous, n_top)
    islands = n_components > n_top                 # components inside holes
    if islands.sum() > most_islands:               # the map's own components give all outer boxes
        order, starts, masks = _sorted_pixels(image, True)
        _upper_pass(order, starts, masks, height, width, groups8, credit, query, gt, best, np.zeros(256),
                    np.zeros(256, np.bool_), n_components)
        islands[:] = False
    return best, largest, ambiguous, islands


_GROUPS8, _GROUPS4, _CREDIT, _EULER = neighbour_tables()
