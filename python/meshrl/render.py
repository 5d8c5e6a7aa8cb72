"""Pictures and text of a packet on its way through the mesh, for ``render()``.

Drawn with NumPy alone (no plotting library at runtime):

- :func:`draw_frame`: an ``(H, W, 3)`` uint8 image: links coloured by packet loss (green
  lossless, through orange, to red at 1), the packet's path so far in blue, nodes as grey discs
  (pale when they have left the mesh), the destination ringed in purple and the node holding
  the packet in orange.
- :func:`describe`: a text summary: where the packet is, where it goes, its path, and the
  neighbour table of its node with the six per-neighbour features in their raw units.

Both read a snapshot of the mesh from ``meshrl._core.VecEnv.network(env_index)``.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["FRAME_SIZE", "draw_frame", "describe", "hops_to"]

FRAME_SIZE: tuple[int, int] = (480, 480)
"""Default frame ``(height, width)``, pixels."""

BACKGROUND = (255, 255, 255)
NODE = (90, 90, 90)
NODE_DOWN = (205, 205, 205)
PATH = (31, 119, 180)
CURRENT = (255, 127, 14)
DESTINATION = (148, 60, 189)
# Link colour by packet loss: 0, 0.5 and 1.
LOSS_STOPS = np.array([[44, 160, 44], [255, 170, 0], [214, 39, 40]], dtype=np.float64)


def loss_colors(loss: np.ndarray) -> np.ndarray:
    """RGB uint8 ``(E, 3)`` for link packet-loss probabilities ``(E,)``."""
    x = np.clip(np.nan_to_num(np.asarray(loss, dtype=np.float64), nan=1.0), 0.0, 1.0) * 2
    lo = np.minimum(x.astype(int), 1)
    t = (x - lo)[:, None]
    return np.rint(LOSS_STOPS[lo] * (1 - t) + LOSS_STOPS[lo + 1] * t).astype(np.uint8)


def _segments(img: np.ndarray, p0: np.ndarray, p1: np.ndarray, colors: np.ndarray, width: int) -> None:
    """Draws the segments ``p0[i] -> p1[i]`` (pixel ``(x, y)``, float) in ``colors[i]``, ``width``
    pixels wide, by sampling each once per pixel of its longer axis."""
    if len(p0) == 0:
        return
    h, w = img.shape[:2]
    steps = np.ceil(np.abs(p1 - p0).max(axis=1)).astype(np.int64) + 1
    seg = np.repeat(np.arange(len(p0)), steps)
    start = np.cumsum(steps) - steps
    t = (np.arange(len(seg)) - start[seg]) / np.maximum(steps[seg] - 1, 1)
    pts = p0[seg] + (p1[seg] - p0[seg]) * t[:, None]
    half = (width - 1) / 2
    offsets = np.arange(width) - half
    for dy in offsets:
        for dx in offsets:
            x = np.rint(pts[:, 0] + dx).astype(np.int64)
            y = np.rint(pts[:, 1] + dy).astype(np.int64)
            inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
            img[y[inside], x[inside]] = colors[seg[inside]]


def _discs(img: np.ndarray, centers: np.ndarray, radius: float, color: Sequence[int]) -> None:
    """Fills discs of ``radius`` pixels around ``centers`` (pixel ``(x, y)``)."""
    h, w = img.shape[:2]
    r = int(np.ceil(radius))
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    keep = dx * dx + dy * dy <= radius * radius
    dx, dy = dx[keep], dy[keep]
    for cx, cy in np.rint(centers).astype(np.int64).reshape(-1, 2):
        x, y = cx + dx, cy + dy
        inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
        img[y[inside], x[inside]] = color


def _to_pixels(positions: np.ndarray, size: tuple[int, int], margin: float) -> np.ndarray:
    """Maps positions (metres, y north) into the frame, keeping the aspect ratio."""
    h, w = size
    pos = np.asarray(positions, dtype=np.float64)
    lo, hi = pos.min(axis=0), pos.max(axis=0)
    span = np.maximum(hi - lo, 1e-9)
    scale = min((w - 2 * margin) / span[0], (h - 2 * margin) / span[1])
    used = span * scale
    x = margin + (w - 2 * margin - used[0]) / 2 + (pos[:, 0] - lo[0]) * scale
    y = h - (margin + (h - 2 * margin - used[1]) / 2 + (pos[:, 1] - lo[1]) * scale)
    return np.stack([x, y], axis=1)


def _undirected_links(network: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(a, b, loss)`` per link ``a < b`` listed in either node's table; ``loss`` is the mean
    packet loss of the directions listed."""
    neighbors = np.asarray(network["neighbors"])
    u = np.repeat(np.arange(neighbors.shape[0]), neighbors.shape[1])
    v = neighbors.reshape(-1)
    loss = np.asarray(network["packet_loss"], dtype=np.float64).reshape(-1)
    listed = v >= 0
    u, v, loss = u[listed], v[listed], loss[listed]
    a, b = np.minimum(u, v), np.maximum(u, v)
    pairs, inverse = np.unique(np.stack([a, b], axis=1), axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    mean = np.bincount(inverse, weights=loss, minlength=len(pairs)) / np.bincount(inverse, minlength=len(pairs))
    return pairs[:, 0], pairs[:, 1], mean


def draw_frame(
    network: Mapping[str, np.ndarray],
    path: Sequence[int],
    node: int,
    destination: int,
    size: tuple[int, int] = FRAME_SIZE,
) -> np.ndarray:
    """The mesh and the packet as an ``(H, W, 3)`` uint8 image (``size = (H, W)``).

    ``path`` is the nodes the packet has been at, from its source to ``node``.
    """
    h, w = size
    img = np.empty((h, w, 3), dtype=np.uint8)
    img[:] = BACKGROUND
    positions = np.asarray(network["positions"])
    n = len(positions)
    if n == 0:
        return img
    radius = float(np.clip(min(h, w) / (5 * np.sqrt(n)), 2.0, 7.0))
    px = _to_pixels(positions, size, margin=2 * radius + 4)
    a, b, loss = _undirected_links(network)
    _segments(img, px[a], px[b], loss_colors(loss), width=1)
    hops = np.asarray(path, dtype=np.int64)
    if len(hops) > 1:
        color = np.array([PATH], dtype=np.uint8).repeat(len(hops) - 1, axis=0)
        _segments(img, px[hops[:-1]], px[hops[1:]], color, width=3)
    active = np.asarray(network["active"], dtype=bool)
    _discs(img, px[~active], radius, NODE_DOWN)
    _discs(img, px[active], radius, NODE)
    if len(hops):
        _discs(img, px[np.unique(hops)], radius * 0.6, PATH)
    _discs(img, px[destination], radius + 4, DESTINATION)
    _discs(img, px[destination], radius + 1.5, BACKGROUND)
    _discs(img, px[destination], radius, NODE if node != destination else CURRENT)
    if node != destination:
        _discs(img, px[node], radius + 2, CURRENT)
    return img


def hops_to(network: Mapping[str, np.ndarray], destination: int) -> np.ndarray:
    """Hop counts from every node to ``destination`` over the neighbour tables (breadth-first
    search, as a distance-vector protocol advertises them); -1 where unreachable."""
    neighbors = np.asarray(network["neighbors"])
    n = neighbors.shape[0]
    listed_by: list[list[int]] = [[] for _ in range(n)]
    for u, v in zip(*np.nonzero(neighbors >= 0)):
        listed_by[int(neighbors[u, v])].append(int(u))
    dist = np.full(n, -1, dtype=np.int64)
    if not np.asarray(network["active"])[destination]:
        return dist
    dist[destination] = 0
    queue = deque([destination])
    while queue:
        v = queue.popleft()
        for u in listed_by[v]:
            if dist[u] < 0:
                dist[u] = dist[v] + 1
                queue.append(u)
    return dist


def describe(network: Mapping[str, np.ndarray], path: Sequence[int], info: Mapping[str, Any], ttl: int) -> str:
    """Text for ``render_mode="ansi"``: the packet's state from ``info`` (a single environment's
    info: ``packet``, ``node``, ``destination``, ``source``, ``path_length``, ``latency_ms``,
    ``outcome_name``, ``loss_cause_name``) and the neighbour table of its node."""
    node, dest = int(info["node"]), int(info["destination"])
    state = info["outcome_name"]
    if state == "lost":
        state += f" ({info['loss_cause_name']})"
    lines = [
        f"packet {info['packet']}: at node {node}, destination {dest}, source {info['source']}; "
        f"{info['path_length']}/{ttl} hops, {float(info['latency_ms']):.1f} ms, {state}",
        "path: " + " -> ".join(str(int(p)) for p in path),
        f"neighbour table of node {node}:",
        f"{'slot':>4} {'neighbour':>9} {'rssi_dBm':>9} {'latency_ms':>10} {'packet_loss':>11} "
        f"{'hops_to_dest':>12} {'bandwidth_Mbps':>14} {'trust':>6}",
    ]
    hops = hops_to(network, dest)
    trust = np.asarray(network["trust"])
    for slot, v in enumerate(np.asarray(network["neighbors"])[node]):
        if v < 0:
            continue
        to_dest = "unreachable" if hops[v] < 0 else str(hops[v])
        lines.append(
            f"{slot:>4} {int(v):>9} {network['rssi_dbm'][node, slot]:>9.1f} "
            f"{network['latency_ms'][node, slot]:>10.2f} {network['packet_loss'][node, slot]:>11.3f} "
            f"{to_dest:>12} {network['bandwidth_mbps'][node, slot]:>14.1f} {trust[v]:>6.2f}"
        )
    if len(lines) == 4:
        lines.append("  (no neighbours)")
    return "\n".join(lines) + "\n"
