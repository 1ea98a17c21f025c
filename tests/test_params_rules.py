"""Flat parameter vectors: the layout's order, sizes, views and the float64 dot product."""
from __future__ import annotations

import pytest
import torch

from hfrnn.linalg.params import ParamLayout, dot64


def layout():
    named = {"W": torch.zeros(2, 3), "b": torch.zeros(3), "s": torch.zeros(())}
    return named, ParamLayout.of(named)


def test_layout_of_records_names_and_shapes_in_order():
    _, lay = layout()
    assert lay.names == ("W", "b", "s")
    assert lay.shapes == ((2, 3), (3,), ())
    assert lay.sizes == (6, 3, 1)
    assert lay.numel == 10


def test_unflatten_gives_views_in_layout_order():
    _, lay = layout()
    flat = torch.arange(10.0)
    parts = lay.unflatten(flat)
    assert list(parts) == ["W", "b", "s"]
    assert torch.equal(parts["W"], torch.arange(6.0).view(2, 3))
    assert torch.equal(parts["b"], torch.tensor([6.0, 7.0, 8.0]))
    assert parts["s"].shape == () and float(parts["s"]) == 9.0
    parts["b"][0] = -1.0  # a view, not a copy
    assert flat[6] == -1.0


def test_unflatten_rejects_a_wrong_length():
    _, lay = layout()
    with pytest.raises(ValueError, match=r"expected a flat vector of 10 entries, got shape \(11,\)"):
        lay.unflatten(torch.zeros(11))
    with pytest.raises(ValueError):
        lay.unflatten(torch.zeros(2, 5))


def test_flatten_inverts_unflatten_and_follows_the_layout_not_the_dict():
    _, lay = layout()
    named = {"s": torch.tensor(9.0), "b": torch.tensor([6.0, 7.0, 8.0]), "W": torch.arange(6.0).view(2, 3)}
    flat = lay.flatten(named)
    assert torch.equal(flat, torch.arange(10.0))
    assert torch.equal(lay.flatten(lay.unflatten(flat)), flat)


def test_dot64_accumulates_in_float64():
    a = torch.full((3,), 1.0, dtype=torch.float32)
    a[0] = 2.0 ** 24
    b = torch.ones(3, dtype=torch.float32)
    # In float32, 2^24 + 1 + 1 = 2^24 (each 1 is lost); in float64 it is 2^24 + 2.
    assert dot64(a, b) == 2.0 ** 24 + 2
    assert isinstance(dot64(a, b), float)
    assert dot64(torch.ones(2, 2), torch.full((4,), 0.5)) == 2.0  # any shapes of equal size
    assert dot64(torch.tensor([1.0, 2.0], dtype=torch.float64), torch.tensor([3.0, -4.0])) == -5.0
