"""Numba backend of the joint kNN search: an exact, parallel cell-grid search for low dimensions.

Imported lazily by :mod:`entropylib.knn` (the numba backend), so ``import entropylib`` compiles
nothing. It returns the same k-th neighbour distances as scipy's KD-tree, bit for bit.

The grid: each axis is cut into ``g`` cells at quantiles of an evenly strided subsample, with
``g ** d`` about ``n / POINTS_PER_CELL``, so a sample whose coordinates are independent fills
the cells evenly whatever its marginal shapes (a grid over the bounding box would put dozens of
points in the central cells of a normal sample and none in its tails). Points are counting-
sorted by cell, which also makes consecutive searches touch the same memory.

The search for x_i visits cells in rings of growing Chebyshev radius r (in cell indices) around
the cell of x_i, keeping the k smallest distances seen. Every point outside the visited box of
cells lies beyond one of the box's faces, so its distance to x_i (max-norm, or Euclidean, which
is never smaller) is at least the distance from x_i to the nearest face that has cells beyond
it. The search stops as soon as the k-th smallest distance is at most that bound: no unvisited
point can come closer. The comparison is exact in floating point: rounding is monotone, so a
computed distance to a point beyond a face is never below the computed distance to that face.
Euclidean distances are compared squared and rooted once at the end.

Where the marginals are skewed or heavy-tailed, quantile cells can be far wider along one axis
than along another and some searches would walk dozens of rings: a search stops after
``MAX_RING`` rings and leaves its point to scipy's KD-tree, and a pilot over a sixteenth of
the cells gives the whole sample to the KD-tree when too many would stop (see ``MAX_WASTE``).

The search is parallel over blocks of points (numba ``prange``); each distance is the same
expression whatever the thread count, so results do not depend on it.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange
from scipy.spatial import cKDTree

from entropylib import threads

#: the grid is used up to this dimension; beyond it a ring of 3^d cells holds a large share of
#: the sample and the grid stops pruning (one thread, n = 10^5 independent normals: 2.9x faster
#: than scipy's KD-tree at d = 2 and 3, 2.0x at d = 4, 1.6x at d = 5)
GRID_MAX_D = 5
#: mean number of points per grid cell (n = 10^5, d = 3: 2 and 4 equally fast, 1 and 8 slower)
POINTS_PER_CELL = 2.0
#: cell edges are quantiles of at most about this many evenly strided points per column
EDGE_SAMPLE = 16_384
#: cells per parallel work item (each item has its own scratch arrays)
CELL_BLOCK = 256
#: above this many times POINTS_PER_CELL, the mean occupancy of the cell of a point (the sum of
#: squared cell counts over n), the sample is too crowded for the grid and the KD-tree is used.
#: Measured on AR(1) normals, n = 10^5, one thread: the grid is faster up to a crowding of
#: about 12 (d = 2, rho = 0.99: 1.5x) and slower from about 22 (d = 3, rho = 0.9: equal;
#: d = 4, rho = 0.9, crowding 96: 0.5x)
MAX_CROWDING = 16.0
#: radius, in cells, up to which a point's search may grow its box (the first box has radius
#: 1, 3^d cells) before the point is left to the KD-tree. Cells follow the quantiles of each
#: axis, so where the marginals are skewed or heavy-tailed a cell can be thousands of times
#: wider along one axis than along another, and the neighbours of a point lie dozens of rings
#: away along the narrow axis: walking those rings cost 200x the KD-tree on cubed Cauchy
#: samples (n = 10^4, d = 2)
MAX_RING = 2
#: the grid searches every PILOT_STEP-th cell first, and leaves the whole sample to the KD-tree
#: when the points those searches left to the tree cost more than MAX_WASTE times the work of
#: the first boxes: each walked (2 MAX_RING + 1)^d cells instead of 3^d, and is searched again.
#: The grid is kept while at most 9, 5.4, 3.2 and 1.9 % of the points are left (d = 2 to 5).
#: On 10^4 points that share was at most 2.6 % for normal samples (d = 2 to 5, 2.3 % on 10^5
#: points, d = 3) and at least 7 % (d <= 4) or 2.9 % (d = 5) for Student t(3), t(2), t(1),
#: lognormal and cubed Cauchy ones, on which the grid was no faster than the tree
PILOT_STEP = 16
MAX_WASTE = 0.25


def kth_distance(
    x: np.ndarray, k: int, euclidean: bool, row_order: bool = False
) -> np.ndarray | None:
    """Distance of every row of ``x`` (n, d) to its k-th nearest other row, in grid order.

    The order of the returned distances is that of the cells, not of the rows (the entropy
    estimator needs only their set), unless ``row_order``. Computed in float64 (as scipy's
    KD-tree does) and returned in float64.
    Returns None when d > ``GRID_MAX_D``, and, having done O(n) work, when the sample crowds
    into few cells (strongly dependent coordinates, a curve or a few clusters in space), where
    the grid would compare each point with many others and a KD-tree, which adapts to the
    sample, is faster; also when a pilot search of every ``PILOT_STEP``-th cell finds the cells
    too unlike the sample's neighbourhoods (skewed or heavy-tailed marginals, see
    ``MAX_RING``). The few points whose search would go beyond ``MAX_RING`` rings get their
    distance from scipy's KD-tree.

    Examples
    --------
    >>> from scipy.spatial import cKDTree
    >>> x = np.random.default_rng(0).normal(size=(5000, 3))
    >>> rho = kth_distance(x, 3, euclidean=False)
    >>> ref = cKDTree(x).query(x, k=4, p=np.inf)[0][:, 3]
    >>> bool(np.array_equal(np.sort(rho), np.sort(ref)))
    True
    """
    x64 = np.ascontiguousarray(x, dtype=np.float64)
    n, d = x64.shape
    if d > GRID_MAX_D:
        return None
    if n <= k:
        raise ValueError(f"the k-th neighbour needs at least k + 1 = {k + 1} rows, got {n}")
    edges, stride = _grid(x64)
    xs, cs, start, order = _bin(x64, edges, stride)
    if _crowding(start) > MAX_CROWDING:
        return None
    rho = np.full(n, np.nan)  # NaN: not searched yet, negative: left to the KD-tree
    pilot, rest = _pilot_cells(start.shape[0] - 1, edges.shape[1] + 1)
    _search(xs, cs, start, edges, stride, k, euclidean, MAX_RING, pilot, rho)
    if ring_waste(rho, d) > MAX_WASTE:
        return None
    _search(xs, cs, start, edges, stride, k, euclidean, MAX_RING, rest, rho)
    _finish_on_tree(rho, xs, k, euclidean)
    if row_order:
        rho[order] = rho.copy()
    return rho


def count_within(x: np.ndarray, radius: np.ndarray, strict: bool) -> np.ndarray | None:
    """Exact max-norm ball counts: for each row i, the number of rows j != i with
    ``max_c |x_jc - x_ic| < radius_i`` (``strict``) or ``<= radius_i``, in row order.

    The distance is the one :func:`kth_distance` and scipy's KD-tree compute (float64 max
    of absolute differences), so a radius taken from a neighbour search is compared with
    exactly the numbers it came from. One column: a binary search per row in the sorted
    column, parallel over rows. 2 <= d <= ``GRID_MAX_D``: the cell grid, each row scanning
    the box of cells its ball can reach and adding whole cells that lie inside the ball
    without looking at their points. Returns None, as :func:`kth_distance` does, above
    ``GRID_MAX_D`` or on crowded samples. ``radius`` must be positive.

    Examples
    --------
    >>> x = np.array([[0.0], [1.0], [2.0], [4.0]])
    >>> count_within(x, np.full(4, 2.0), strict=True).tolist()
    [1, 2, 1, 0]
    >>> count_within(x, np.full(4, 2.0), strict=False).tolist()
    [2, 2, 3, 1]
    """
    x64 = np.ascontiguousarray(x, dtype=np.float64)
    r64 = np.ascontiguousarray(radius, dtype=np.float64)
    n, d = x64.shape
    if d == 1:
        column = x64[:, 0]
        return _count_sorted(np.sort(column), column, r64, strict)
    if d > GRID_MAX_D:
        return None
    edges, stride = _grid(x64)
    xs, cs, start, order = _bin(x64, edges, stride)
    if _crowding(start) > MAX_CROWDING:
        return None
    counts = np.empty(n, np.int64)
    counts[order] = _count_grid(xs, cs, start, edges, stride, r64[order], strict)
    return counts


def crowding(x: np.ndarray) -> float:
    """Mean number of points in the cell of a point, over ``POINTS_PER_CELL`` (1 when even).

    The grid is used while this is at most ``MAX_CROWDING``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> bool(crowding(rng.normal(size=(10_000, 3))) < 2)
    True
    >>> t = rng.normal(size=(10_000, 1))
    >>> bool(crowding(np.hstack([t, t, t])) > MAX_CROWDING)  # points on a line
    True
    """
    x64 = np.ascontiguousarray(x, dtype=np.float64)
    edges, stride = _grid(x64)
    return _crowding(_bin(x64, edges, stride)[2])


def _pilot_cells(cells: int, g: int) -> tuple[np.ndarray, np.ndarray]:
    """Every ``PILOT_STEP``-th cell (a step coprime with the g cells per axis, so the pilot
    reaches every cell index of every axis, the tails included) and the other cells."""
    step = PILOT_STEP
    while math.gcd(step, g) != 1:
        step += 1
    pilot = np.zeros(cells, bool)
    pilot[::step] = True
    return np.flatnonzero(pilot), np.flatnonzero(~pilot)


def ring_waste(rho: np.ndarray, d: int) -> float:
    """Work the grid spent on points it left to the KD-tree (negative ``rho``) over the work
    of the first boxes of all searched points (``rho`` not NaN): each such point walked
    (2 ``MAX_RING`` + 1)^d cells, not 3^d, and is searched again. The grid is kept while this
    is at most ``MAX_WASTE``.

    Examples
    --------
    >>> ring_waste(np.array([0.5, -1.0, 2.0, 1.0, np.nan]), d=2)  # 1/4 left, (5/3)^2 cells
    0.6944444444444445
    """
    searched = rho[~np.isnan(rho)]
    if searched.size == 0:
        return 0.0
    return float(np.mean(searched < 0)) * ((2 * MAX_RING + 1) / 3) ** d


def _finish_on_tree(rho: np.ndarray, xs: np.ndarray, k: int, euclidean: bool) -> None:
    """Fill in, by scipy's KD-tree, the distances the grid left negative (searches that would
    have gone beyond ``MAX_RING``); the tree computes the same float64 distances."""
    rows = np.flatnonzero(rho < 0)
    if rows.size == 0:
        return
    workers = threads.kdtree_workers(rows.size, xs.shape[1])
    dist = cKDTree(xs).query(xs[rows], k=[k + 1], p=2.0 if euclidean else np.inf,
                             workers=workers)[0]
    rho[rows] = dist[:, 0]


def _crowding(start: np.ndarray) -> float:
    counts = np.diff(start)
    return float(counts @ counts) / start[-1] / POINTS_PER_CELL


def _grid(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Interior cell edges (d, g - 1) and the strides of the flat cell index (d,)."""
    n, d = x.shape
    g = max(1, int((n / POINTS_PER_CELL) ** (1.0 / d)))
    sample = np.sort(x[:: max(1, n // EDGE_SAMPLE)], axis=0)
    # interior edges e_1 .. e_{g-1}; cell q of an axis holds e_q <= value < e_{q+1}
    edges = np.ascontiguousarray(sample[(np.arange(1, g) * sample.shape[0]) // g].T)
    return edges.reshape(d, g - 1), g ** np.arange(d - 1, -1, -1, dtype=np.int64)


@njit(cache=True)
def _cell_of(edges_c, value):  # pragma: no cover (compiled)
    """Number of interior edges <= value (binary search): the cell index along one axis."""
    lo = 0
    hi = edges_c.shape[0]
    while lo < hi:
        mid = (lo + hi) // 2
        if edges_c[mid] <= value:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(parallel=True, cache=True)
def _bin(x, edges, stride):  # pragma: no cover (compiled)
    """Points counting-sorted by cell: (points, their cell coordinates, cell starts, and the
    row of each sorted point)."""
    n, d = x.shape
    coords = np.empty((n, d), np.int64)
    cell = np.empty(n, np.int64)
    for i in prange(n):
        flat = 0
        for c in range(d):
            q = _cell_of(edges[c], x[i, c])
            coords[i, c] = q
            flat += q * stride[c]
        cell[i] = flat
    start = np.zeros(stride[0] * (edges.shape[1] + 1) + 1, np.int64)
    for i in range(n):
        start[cell[i] + 1] += 1
    for q in range(start.shape[0] - 1):
        start[q + 1] += start[q]
    fill = start[:-1].copy()
    xs = np.empty((n, d))
    cs = np.empty((n, d), np.int64)
    order = np.empty(n, np.int64)
    for i in range(n):
        p = fill[cell[i]]
        fill[cell[i]] += 1
        order[p] = i
        for c in range(d):
            xs[p, c] = x[i, c]
            cs[p, c] = coords[i, c]
    return xs, cs, start, order


@njit(parallel=True, cache=True)
def _search(xs, cs, start, edges, stride, k, euclidean, max_ring,
            todo, out):  # pragma: no cover (compiled)
    """k-th neighbour distance of every point of the cells ``todo``, written into ``out``:
    all points of a cell search together.

    The 3^d cells around a cell are scanned once for all its points (each neighbour point is
    loaded once and compared with every point of the cell); a point whose k-th distance is not
    yet below the bound of that box (near the edge of a sparse region) continues alone, ring by
    ring, in :func:`_rings`, up to ``max_ring`` rings (-1 for a point not finished there).
    """
    d = xs.shape[1]
    g = edges.shape[1] + 1
    cells = todo.shape[0]
    for b in prange((cells + CELL_BLOCK - 1) // CELL_BLOCK):
        cap = 8
        best = np.empty((cap, k))
        lo = np.empty(d, np.int64)
        hi = np.empty(d, np.int64)
        cur = np.empty(d, np.int64)
        for t in range(b * CELL_BLOCK, min(cells, (b + 1) * CELL_BLOCK)):
            q = todo[t]
            a = start[q]
            m = start[q + 1] - a
            if m == 0:
                continue
            if m > cap:
                cap = 2 * m
                best = np.empty((cap, k))
            best[:m] = np.inf
            _start_box(cs, a, 1, g, lo, hi, cur)
            while True:
                flat = 0
                for c in range(d):
                    flat += cur[c] * stride[c]
                for j in range(start[flat], start[flat + 1]):
                    for i in range(m):
                        if a + i != j:
                            _offer(best[i], _distance(xs, a + i, j, euclidean))
                if not _advance(cur, lo, hi):
                    break
            for i in range(m):
                kth = best[i, k - 1]
                if kth <= _box_bound(a + i, xs, cs, edges, 1, euclidean):
                    out[a + i] = np.sqrt(kth) if euclidean else kth
                else:
                    out[a + i] = _rings(a + i, xs, cs, start, edges, stride, k, euclidean,
                                        best[i], 1, max_ring, lo, hi, cur)


@njit(cache=True, inline="always")
def _box_bound(p, xs, cs, edges, r, euclidean):  # pragma: no cover (compiled)
    """Least distance from point p to any point outside the box of cells within radius r of
    its cell: its distance to the nearest face with cells beyond it (squared if Euclidean)."""
    g = edges.shape[1] + 1
    bound = np.inf
    for c in range(xs.shape[1]):
        q = cs[p, c]
        if q - r > 0:
            bound = min(bound, xs[p, c] - edges[c, q - r - 1])
        if q + r < g - 1:
            bound = min(bound, edges[c, q + r] - xs[p, c])
    return bound * bound if euclidean else bound


@njit(cache=True, inline="always")
def _distance(xs, p, j, euclidean):  # pragma: no cover (compiled)
    """Max-norm distance of points p and j, or their squared Euclidean distance."""
    dist = 0.0
    if euclidean:
        for c in range(xs.shape[1]):
            u = xs[p, c] - xs[j, c]
            dist += u * u
    else:
        for c in range(xs.shape[1]):
            u = abs(xs[p, c] - xs[j, c])
            if u > dist:
                dist = u
    return dist


@njit(cache=True, inline="always")
def _offer(best, dist):  # pragma: no cover (compiled)
    """Insert dist into the ascending list of the k smallest distances, if it belongs there."""
    k = best.shape[0]
    if dist < best[k - 1]:
        q = k - 1
        while q > 0 and best[q - 1] > dist:
            best[q] = best[q - 1]
            q -= 1
        best[q] = dist


@njit(cache=True, inline="always")
def _start_box(cs, p, r, g, lo, hi, cur):  # pragma: no cover (compiled)
    """Set lo..hi to the cells within Chebyshev radius r of point p's cell (clipped to the
    grid of g cells per axis) and cur to its first cell."""
    for c in range(cs.shape[1]):
        lo[c] = max(cs[p, c] - r, 0)
        hi[c] = min(cs[p, c] + r, g - 1)
        cur[c] = lo[c]


@njit(cache=True, inline="always")
def _advance(cur, lo, hi):  # pragma: no cover (compiled)
    """Step the multi-index cur through the box lo..hi (last axis fastest); False at the end."""
    c = cur.shape[0] - 1
    while c >= 0:
        cur[c] += 1
        if cur[c] <= hi[c]:
            return True
        cur[c] = lo[c]
        c -= 1
    return False


@njit(cache=True)
def _rings(p, xs, cs, start, edges, stride, k, euclidean,
           best, r, max_ring, lo, hi, cur):  # pragma: no cover (compiled)
    """Finish the search of point p whose cells up to Chebyshev radius r are done.

    Returns its k-th neighbour distance once no point beyond the visited box can be nearer,
    scanning one more ring of cells at a time until then, or -1 if that takes more than
    ``max_ring`` rings (each ring walks its whole box, O(r^d) cells).
    """
    d = xs.shape[1]
    g = edges.shape[1] + 1
    while True:
        if best[k - 1] <= _box_bound(p, xs, cs, edges, r, euclidean):
            return np.sqrt(best[k - 1]) if euclidean else best[k - 1]
        if r >= max_ring:
            return -1.0
        r += 1
        _start_box(cs, p, r, g, lo, hi, cur)
        while True:  # the cells of the new ring: those of the box with an index at +-r
            flat = 0
            on_ring = False
            gap = 0.0  # distance from x_p to the cell (max-norm), below any of its points'
            for c in range(d):
                q = cur[c]
                flat += q * stride[c]
                if q == cs[p, c] - r or q == cs[p, c] + r:
                    on_ring = True
                if q < cs[p, c]:
                    gap = max(gap, xs[p, c] - edges[c, q])
                elif q > cs[p, c]:
                    gap = max(gap, edges[c, q - 1] - xs[p, c])
            if on_ring and (gap * gap if euclidean else gap) < best[k - 1]:
                for j in range(start[flat], start[flat + 1]):
                    if j != p:
                        _offer(best, _distance(xs, p, j, euclidean))
            if not _advance(cur, lo, hi):
                break


@njit(cache=True, inline="always")
def _within(dist, r, strict):  # pragma: no cover (compiled)
    return dist < r if strict else dist <= r


@njit(parallel=True, cache=True)
def _count_sorted(s, values, radius, strict):  # pragma: no cover (compiled)
    """Per value v_i (one of the points of the sorted column s), the points j != i with
    |s_j - v_i| within radius_i.

    Rounding is monotone, so the computed |s_j - v_i| falls as s_j rises towards v_i and rises
    after it: the points within the radius form one run of s, whose ends two binary searches
    on that computed distance find (not on v_i +- r, which rounds differently).
    """
    n = s.shape[0]
    out = np.empty(n, np.int64)
    for i in prange(n):
        v = values[i]
        r = radius[i]
        mid = np.searchsorted(s, v)
        lo, hi = 0, mid  # first index of [0, mid) within the radius
        while lo < hi:
            m = (lo + hi) // 2
            if _within(v - s[m], r, strict):
                hi = m
            else:
                lo = m + 1
        first = lo
        lo, hi = mid, n  # first index of [mid, n) beyond the radius
        while lo < hi:
            m = (lo + hi) // 2
            if _within(s[m] - v, r, strict):
                lo = m + 1
            else:
                hi = m
        out[i] = lo - first - 1  # v_i itself is in the run (distance 0, radius > 0)
    return out


@njit(parallel=True, cache=True)
def _count_grid(xs, cs, start, edges, stride, radius, strict):  # pragma: no cover (compiled)
    """Ball counts of the grid-sorted points xs, in their order (see :func:`count_within`).

    Along each axis c the ball of point p reaches cell q < cs[p, c] only if the distance to
    that cell's upper edge is within the radius (every point of the cell is farther than that
    edge, and rounding is monotone), likewise above: the reachable cells form a box lo..hi.
    Every point of a cell strictly inside the box along c (lo < q < hi) is within the radius
    along c, since it is no farther than the edge that made the next cell reachable; a cell
    strictly inside along every axis is counted whole. Only boundary cells are scanned.
    """
    n, d = xs.shape
    g = edges.shape[1] + 1
    out = np.empty(n, np.int64)
    for b in prange((n + CELL_BLOCK - 1) // CELL_BLOCK):
        lo = np.empty(d, np.int64)
        hi = np.empty(d, np.int64)
        cur = np.empty(d, np.int64)
        for p in range(b * CELL_BLOCK, min(n, (b + 1) * CELL_BLOCK)):
            r = radius[p]
            for c in range(d):
                v = xs[p, c]
                a = cs[p, c]
                while a > 0 and _within(v - edges[c, a - 1], r, strict):
                    a -= 1
                z = cs[p, c]
                while z < g - 1 and _within(edges[c, z] - v, r, strict):
                    z += 1
                lo[c] = a
                hi[c] = z
                cur[c] = a
            count = 0
            while True:
                flat = 0
                inside = True
                for c in range(d):
                    flat += cur[c] * stride[c]
                    if cur[c] == lo[c] or cur[c] == hi[c]:
                        inside = False
                if inside:
                    count += start[flat + 1] - start[flat]
                    if start[flat] <= p < start[flat + 1]:
                        count -= 1
                else:
                    for j in range(start[flat], start[flat + 1]):
                        if j != p and _within(_distance(xs, p, j, False), r, strict):
                            count += 1
                if not _advance(cur, lo, hi):
                    break
            out[p] = count
    return out
