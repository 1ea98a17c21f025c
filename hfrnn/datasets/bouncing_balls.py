"""Bouncing balls: the video generator of Sutskever, Hinton & Taylor (2008), vectorised.

Physics (``specs/tasks.md``), for ``n`` balls of radius ``r`` and equal mass in a box of side
``S`` (10):

* initial positions uniform in ``[2, S]`` per coordinate, redrawn until no ball touches a wall
  (``x - r < 0`` or ``x + r > S``) or another ball (``|x_i - x_j| < 2r``);
* velocities Gaussian, rescaled so that the whole ``[n, 2]`` velocity matrix has Frobenius norm
  0.5;
* each frame records the positions, then advances two half-steps ``x <- x + v/2``; after each
  half-step a ball past a wall gets that velocity component pointed back inside, and each
  overlapping pair ``(i, j)`` (``j < i``, in that order) collides elastically along the line of
  centres ``w = (x_i - x_j)/|x_i - x_j|``: with equal masses the two balls exchange their
  velocity components along ``w``. Both rules preserve ``sum |v|^2``.

Rendering: pixel ``(row, col)`` has centre ``p = ((col + 0.5) S / res, (row + 0.5) S / res)``
and value ``min(1, sum_balls exp(-(|p - x|^2 / r^2)^4))`` (soft discs in ``[0, 1]``). A frame is
flattened row-major to ``res * res`` values.

All sequences of a split are simulated at once (arrays ``[N, n_balls, 2]``); only the loops over
time, half-steps and ball pairs remain in Python, so thousands of sequences take seconds.
"""
from __future__ import annotations

import logging

import numpy as np

from hfrnn.datasets.config import BouncingBallsConfig
from hfrnn.datasets.h5io import SPLITS, SequenceSet, Split

log = logging.getLogger(__name__)

_SPEED = 0.5  # Frobenius norm of the velocity matrix
_HALF_STEPS = 2
_RENDER_CHUNK = 256  # sequences rendered at a time (bounds the [chunk, T, res, res] temporaries)


def _overlaps(x: np.ndarray, r: float, size: float) -> np.ndarray:
    """``[N]`` True where a configuration ``x`` ``[N, n, 2]`` touches a wall or has two balls touching."""
    bad = np.any((x - r < 0) | (x + r > size), axis=(1, 2))
    n = x.shape[1]
    for i in range(n):
        for j in range(i):
            bad |= np.linalg.norm(x[:, i] - x[:, j], axis=-1) < 2 * r
    return bad


def initial_state(N: int, n_balls: int, r: float, size: float,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Positions and velocities ``[N, n_balls, 2]`` (rejection sampling, vectorised)."""
    # The original draws in [2, 2 + 8]: 8 = 10 - 2 spans the box of side 10.
    lo, span = 2.0 * size / 10.0, 8.0 * size / 10.0
    x = lo + rng.random((N, n_balls, 2)) * span
    bad = _overlaps(x, r, size)
    for _ in range(10_000):
        if not bad.any():
            break
        x[bad] = lo + rng.random((int(bad.sum()), n_balls, 2)) * span
        bad[bad] = _overlaps(x[bad], r, size)
    else:
        raise ValueError(f"cannot place {n_balls} balls of radius {r} in a box of side {size}")
    v = rng.standard_normal((N, n_balls, 2))
    v *= _SPEED / np.linalg.norm(v, axis=(1, 2), keepdims=True)
    return x, v


def simulate(N: int, length: int, n_balls: int = 3, r: float = 1.2, size: float = 10.0,
             rng: np.random.Generator | None = None,
             state: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Ball centres ``[N, length, n_balls, 2]`` (coordinate 0 is the column direction).

    ``state`` (positions, velocities ``[N, n_balls, 2]``) replaces the random initial state.
    """
    if state is None:
        rng = rng if rng is not None else np.random.default_rng(0)
        x, v = initial_state(N, n_balls, r, size, rng)
    else:
        x, v = (np.array(a, dtype=np.float64) for a in state)
    out = np.empty((N, length, n_balls, 2))
    eps = 1.0 / _HALF_STEPS
    for t in range(length):
        out[:, t] = x
        for _ in range(_HALF_STEPS):
            x += eps * v
            v = np.where(x - r < 0, np.abs(v), v)
            v = np.where(x + r > size, -np.abs(v), v)
            for i in range(n_balls):
                for j in range(i):
                    w = x[:, i] - x[:, j]
                    d = np.linalg.norm(w, axis=-1, keepdims=True)
                    hit = d < 2 * r
                    w = w / np.where(d > 0, d, 1.0)
                    vi = np.sum(w * v[:, i], -1, keepdims=True)
                    vj = np.sum(w * v[:, j], -1, keepdims=True)
                    # Equal masses: the components along the line of centres are exchanged.
                    v[:, i] += np.where(hit, w * (vj - vi), 0.0)
                    v[:, j] += np.where(hit, w * (vi - vj), 0.0)
    return out


def render(pos: np.ndarray, res: int = 15, r: float = 1.2, size: float = 10.0) -> np.ndarray:
    """Soft-disc frames ``[N, T, res * res]`` (float32) from centres ``[N, T, n_balls, 2]``."""
    N, T, n_balls, _ = pos.shape
    c = (np.arange(res) + 0.5) / res * size
    frames = np.empty((N, T, res * res), dtype=np.float32)
    for a in range(0, N, _RENDER_CHUNK):
        p = pos[a:a + _RENDER_CHUNK]
        img = np.zeros(p.shape[:2] + (res, res))
        for b in range(n_balls):
            dx2 = (c[None, None, None, :] - p[:, :, b, 0, None, None]) ** 2
            dy2 = (c[None, None, :, None] - p[:, :, b, 1, None, None]) ** 2
            img += np.exp(-(((dx2 + dy2) / r**2) ** 4))
        frames[a:a + _RENDER_CHUNK] = np.minimum(img, 1.0).reshape(len(p), T, res * res)
    return frames


def generate(N: int, cfg: BouncingBallsConfig, rng: np.random.Generator) -> np.ndarray:
    """``N`` sequences ``[N, length, res * res]`` for the options in ``cfg``."""
    pos = simulate(N, cfg.length, cfg.n_balls, cfg.radius, cfg.size, rng)
    return render(pos, cfg.res, cfg.radius, cfg.size)


def validate(cfg: BouncingBallsConfig) -> None:
    if cfg.res < 1 or cfg.n_balls < 1 or cfg.length < 2 or cfg.radius <= 0 or cfg.size <= 0:
        raise ValueError("bouncing balls: need res >= 1, n_balls >= 1, length >= 2, radius > 0, size > 0")
    if min(cfg.n_train, cfg.n_valid, cfg.n_test) < 0 or cfg.n_train < 1:
        raise ValueError("bouncing balls: need n_train >= 1 and n_valid, n_test >= 0")


def build(cfg: BouncingBallsConfig) -> SequenceSet:
    """All three splits; split ``k`` draws from ``default_rng([seed, k])``, so changing one
    split's size leaves the others unchanged."""
    validate(cfg)
    splits = {}
    for k, (split, n) in enumerate(zip(SPLITS, (cfg.n_train, cfg.n_valid, cfg.n_test))):
        seqs = generate(n, cfg, np.random.default_rng([cfg.seed, k]))
        splits[split] = Split(seqs.reshape(-1, cfg.res**2),
                              np.arange(n + 1, dtype=np.int64) * cfg.length,
                              [f"{split}/{i}" for i in range(n)])
        log.info("bouncing balls: %s split, %d sequences", split, n)
    params = {k: v for k, v in vars(cfg).items() if k not in ("out", "overwrite")}
    return SequenceSet(
        kind="bouncing_balls", name="bouncing_balls", dim=cfg.res**2, splits=splits,
        source="generator: Sutskever, Hinton & Taylor (2008), vectorised", params=params,
        description=f"{cfg.res}x{cfg.res} soft-disc frames of {cfg.n_balls} bouncing balls, "
                    f"{cfg.length} frames per sequence, values in [0, 1]")
