"""The orderings of ``leakcheck sort``: the SSIM matrix, single-linkage clusters, the chain.

Pure functions of canonical arrays or of a dense similarity matrix; deterministic (ties always go
to the lower index, which is the earlier path).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from leakcheck.engine import kernels
from leakcheck.engine.compare import content_ids
from leakcheck.engine.search import prepare_image_set, search_pairs

#: Rows per tile of the all-pairs search: small tiles balance the triangle over many workers.
SIMILARITY_TILE_ROWS = 64


def similarity_matrix(
    pixels: np.ndarray,
    *,
    window_name: str = "uniform",
    jobs: int = -1,
    backend: str = "threading",
    on_total: Callable[[int], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Exact SSIM of every pair of canonical images, as a symmetric ``(n, n)`` float64 matrix.

    The diagonal is 1. Only distinct canonical images are searched (every pair, no pruning);
    identical ones share their row. Values equal ``skimage.metrics.structural_similarity`` of the
    canonical arrays with the chosen window (the product's SSIM definition).

    References
    ----------
    Wang, Z., Bovik, A. C., Sheikh, H. R. and Simoncelli, E. P. (2004). Image quality assessment:
    from error visibility to structural similarity. IEEE Transactions on Image Processing 13(4).
    """
    content = content_ids(pixels)
    first_of = np.unique(content, return_index=True)[1]
    distinct = len(first_of)
    if on_total is not None:
        on_total(distinct * (distinct - 1) // 2)
    window = kernels.window_spec(window_name)
    order = np.arange(kernels.n_terms(pixels.shape[1:], window), dtype=np.int64)
    images = prepare_image_set(pixels[first_of], np.arange(distinct), window, order)
    hits, _ = search_pairs(
        images, None, order=order, window=window, threshold=-1.0, prune=False,
        jobs=jobs, backend=backend, tile_rows=SIMILARITY_TILE_ROWS, on_progress=on_progress,
    )  # fmt: skip
    among_distinct = np.eye(distinct)
    among_distinct[hits.index_a, hits.index_b] = hits.ssim
    among_distinct[hits.index_b, hits.index_a] = hits.ssim
    return among_distinct[np.ix_(content, content)]


def maximum_spanning_tree(similarity: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Prim's maximum spanning tree of the complete SSIM graph: ``(parent, child, ssim)`` edges.

    ``O(n²)`` on the dense matrix; ties go to the lower index, so the tree is deterministic.
    """
    n = similarity.shape[0]
    in_tree = np.zeros(n, dtype=bool)
    best = np.full(n, -np.inf)
    parent = np.full(n, -1, dtype=np.int64)
    edges = np.empty((3, max(n - 1, 0)))
    current = 0
    in_tree[0] = True
    for step in range(n - 1):
        row = similarity[current]
        better = ~in_tree & (row > best)
        best[better] = row[better]
        parent[better] = current
        current = int(np.argmax(np.where(in_tree, -np.inf, best)))
        in_tree[current] = True
        edges[:, step] = (parent[current], current, best[current])
    return edges[0].astype(np.int64), edges[1].astype(np.int64), edges[2]


def single_linkage(
    similarity: np.ndarray, *, cut: float | None = None, clusters: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Single-linkage clusters: ``(label per image, weakest kept link per label)``.

    With ``cut``, tree links below it are cut (every pair >= ``cut`` shares a cluster); with
    ``clusters=K``, the K−1 weakest tree links (ties: the later link). Labels are arbitrary
    integers; a singleton's weakest link is NaN.
    """
    n = similarity.shape[0]
    parent, child, weight = maximum_spanning_tree(similarity)
    if clusters is not None:
        cut_count = min(max(clusters, 1), max(n, 1)) - 1
        by_strength = np.lexsort((-np.arange(weight.size), weight))
        keep = np.ones(weight.size, dtype=bool)
        keep[by_strength[:cut_count]] = False
    else:
        if cut is None:
            raise ValueError("give a cut threshold or a number of clusters")
        keep = weight >= cut
    root = np.arange(n)

    def find(x: int) -> int:
        while root[x] != x:
            root[x] = root[root[x]]
            x = int(root[x])
        return x

    for a, b in zip(parent[keep], child[keep], strict=True):
        root[find(int(a))] = find(int(b))
    labels = np.asarray([find(k) for k in range(n)], dtype=np.int64)
    weakest = np.full(n, np.nan)
    for b, value in zip(child[keep], weight[keep], strict=True):
        label = labels[b]
        weakest[label] = value if np.isnan(weakest[label]) else min(weakest[label], value)
    return labels, weakest


def greedy_chain(similarity: np.ndarray, labels: np.ndarray, start: int) -> np.ndarray:
    """Visit every image once: nearest unvisited in the same cluster, else nearest anywhere.

    Ties go to the lower index (the earlier path).
    """
    n = similarity.shape[0]
    unvisited = np.ones(n, dtype=bool)
    left_in_cluster = np.bincount(labels, minlength=n)
    order = np.empty(n, dtype=np.int64)
    current = start
    for rank in range(n):
        order[rank] = current
        unvisited[current] = False
        left_in_cluster[labels[current]] -= 1
        if rank == n - 1:
            break
        allowed = unvisited
        if left_in_cluster[labels[current]]:
            allowed = unvisited & (labels == labels[current])
        current = int(np.argmax(np.where(allowed, similarity[current], -np.inf)))
    return order
