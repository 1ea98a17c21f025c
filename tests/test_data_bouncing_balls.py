"""The bouncing-balls generator: physics, rendering, determinism, speed."""
from __future__ import annotations

import time

import numpy as np

from hfrnn.datasets import bouncing_balls as bb
from hfrnn.datasets.config import BouncingBallsConfig


def test_initial_state_is_valid():
    x, v = bb.initial_state(500, 3, 1.2, 10.0, np.random.default_rng(1))
    assert np.all(x - 1.2 >= 0) and np.all(x + 1.2 <= 10)
    for i in range(3):
        for j in range(i):
            assert np.all(np.linalg.norm(x[:, i] - x[:, j], axis=-1) >= 2.4)
    np.testing.assert_allclose(np.linalg.norm(v, axis=(1, 2)), 0.5)


def test_head_on_collision_exchanges_velocities():
    x = np.array([[[3.0, 5.0], [7.0, 5.0]]])
    v = np.array([[[0.5, 0.0], [0.0, 0.0]]])
    pos = bb.simulate(1, 6, n_balls=2, state=(x, v))
    # Ball 0 moves right until the balls touch (distance < 2.4), then stops; ball 1 takes over.
    assert pos[0, 3, 0, 0] > pos[0, 2, 0, 0]
    np.testing.assert_allclose(pos[0, -1, 0], pos[0, -2, 0])
    np.testing.assert_allclose(pos[0, -1, 1] - pos[0, -2, 1], [0.5, 0.0])


def test_wall_reflects():
    pos = bb.simulate(1, 20, n_balls=1, state=(np.array([[[5.0, 5.0]]]), np.array([[[0.5, 0.0]]])))
    xs = pos[0, :, 0, 0]
    assert xs.max() <= 10 - 1.2 + 0.25 and xs[-1] < xs.max()  # turned back at the right wall
    np.testing.assert_allclose(pos[0, :, 0, 1], 5.0)


def test_balls_stay_in_box_and_speed_is_conserved():
    rng = np.random.default_rng(3)
    pos = bb.simulate(300, 60, rng=rng)
    assert pos.min() > 1.2 - 0.5 and pos.max() < 10 - 1.2 + 0.5
    # Frame-to-frame displacement never exceeds the total speed (|v_i| <= 0.5).
    step = np.linalg.norm(np.diff(pos, axis=1), axis=-1)
    assert step.max() <= 0.5 + 1e-9


def test_render_soft_disc():
    res, size = 15, 10.0
    c = (np.arange(res) + 0.5) / res * size
    pos = np.array([[[[c[4], c[7]]]]])  # column 4, row 7
    f = bb.render(pos, res=res).reshape(res, res)
    assert f[7, 4] == 1.0 and f[0, 14] == 0.0
    assert f.dtype == np.float32 and f.min() >= 0 and f.max() <= 1
    np.testing.assert_allclose(f[7, 3], np.exp(-(((c[4] - c[3]) ** 2 / 1.2**2) ** 4)), rtol=1e-6)


def test_build_is_seeded_and_splits_independent():
    cfg = BouncingBallsConfig(n_train=20, n_valid=5, n_test=7, length=12)
    a, b = bb.build(cfg), bb.build(cfg)
    for s in ("train", "valid", "test"):
        np.testing.assert_array_equal(a.splits[s].data, b.splits[s].data)
    assert a.splits["train"].data.shape == (20 * 12, 225) and len(a.splits["test"]) == 7
    c = bb.build(BouncingBallsConfig(n_train=40, n_valid=5, n_test=7, length=12))
    np.testing.assert_array_equal(a.splits["test"].data, c.splits["test"].data)
    d = bb.build(BouncingBallsConfig(n_train=20, n_valid=5, n_test=7, length=12, seed=1))
    assert not np.array_equal(a.splits["train"].data, d.splits["train"].data)
    x = a.splits["train"].data
    assert 0 <= x.min() and x.max() <= 1 and x.max() == 1.0


def test_thousands_of_sequences_in_seconds():
    t = time.perf_counter()
    frames = bb.generate(2000, BouncingBallsConfig(), np.random.default_rng(0))
    assert frames.shape == (2000, 30, 225)
    assert time.perf_counter() - t < 10
