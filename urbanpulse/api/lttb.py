"""Largest-Triangle-Three-Buckets downsampling (Steinarsson, 2013) for chart series.

Keeps the first and last points and, from each of ``threshold - 2`` equal buckets between them,
the point forming the largest triangle with the point kept before it and the mean of the next
bucket: peaks and dips survive, which plain averaging would flatten.
"""

from __future__ import annotations

from collections.abc import Sequence


def lttb_indices(xs: Sequence[float], ys: Sequence[float], threshold: int) -> list[int]:
    """Indices of the points to keep, ascending; all of them when there are few enough."""
    n = len(xs)
    if len(ys) != n:
        raise ValueError("xs and ys differ in length")
    if threshold < 3:
        raise ValueError("threshold must be at least 3")
    if n <= threshold:
        return list(range(n))
    kept = [0]
    every = (n - 2) / (threshold - 2)
    a = 0
    for i in range(threshold - 2):
        start = int(i * every) + 1
        end = int((i + 1) * every) + 1
        next_start, next_end = end, min(int((i + 2) * every) + 1, n)
        if i == threshold - 3:  # the last bucket is followed by the last point alone
            next_start, next_end = n - 1, n
        span = next_end - next_start
        mean_x = sum(xs[next_start:next_end]) / span
        mean_y = sum(ys[next_start:next_end]) / span
        ax, ay = xs[a], ys[a]
        best, best_area = start, -1.0
        for j in range(start, end):
            area = abs((ax - mean_x) * (ys[j] - ay) - (ax - xs[j]) * (mean_y - ay))
            if area > best_area:
                best, best_area = j, area
        kept.append(best)
        a = best
    kept.append(n - 1)
    return kept
