"""Minimum-cost assignment of rows to columns (what ``scipy.optimize.linear_sum_assignment``
solves), in numpy: the tracker links a frame's detections to its tracks with it, and the
scoring image carries no SciPy.

Shortest augmenting paths with dual potentials (the Jonker-Volgenant family): each row in turn
is joined to the matching by a Dijkstra search over reduced costs, O(rows² × cols). The
tracker's matrices are a few tracks by a few faces.
"""

from __future__ import annotations

import numpy as np


def linear_sum_assignment(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of a minimum-cost matching of a (R, C) matrix: min(R, C) pairs, rows
    ascending, as SciPy returns them. Raises ValueError on NaN, or when no finite matching exists."""
    cost = np.asarray(cost, dtype=np.float64)
    if cost.ndim != 2:
        raise ValueError(f"the cost matrix must be 2-D, got shape {cost.shape}")
    if np.isnan(cost).any() or np.isneginf(cost).any():
        raise ValueError("the cost matrix holds NaN or -inf")
    transposed = cost.shape[0] > cost.shape[1]
    if transposed:  # the search assigns every row: rows must not outnumber columns
        cost = cost.T
    n_rows, n_cols = cost.shape
    if n_rows == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    u = np.zeros(n_rows)  # row potentials
    v = np.zeros(n_cols)  # column potentials
    row_of = np.full(n_cols, -1, np.int64)  # the row each column is matched to
    col_of = np.full(n_rows, -1, np.int64)
    for start in range(n_rows):
        shortest = np.full(n_cols, np.inf)  # shortest reduced-cost path to each column so far
        via = np.full(n_cols, -1, np.int64)  # the row each column is reached from
        done = np.zeros(n_cols, bool)
        row, reach, sink = start, 0.0, -1
        rows_seen = [start]
        while sink < 0:
            free = ~done
            through = reach + cost[row] - u[row] - v
            better = free & (through < shortest)
            shortest[better] = through[better]
            via[better] = row
            candidates = np.flatnonzero(free)
            col = int(candidates[np.argmin(shortest[candidates])])
            reach = float(shortest[col])
            if not np.isfinite(reach):
                raise ValueError("the cost matrix has no finite matching")
            done[col] = True
            if row_of[col] < 0:
                sink = col
            else:
                row = int(row_of[col])
                rows_seen.append(row)
        # update the potentials so reduced costs stay non-negative, then flip the path
        for r in rows_seen:
            if r == start:
                u[r] += reach
            else:
                u[r] += reach - shortest[col_of[r]]
        v[done] -= reach - shortest[done]
        col = sink
        while True:
            row = int(via[col])
            row_of[col] = row
            col, col_of[row] = col_of[row], col
            if row == start:
                break
    rows = np.arange(n_rows)
    cols = col_of
    if transposed:
        order = np.argsort(cols)
        return cols[order], rows[order]
    return rows, cols
