"""The benchmark scripts run, check their yardstick against hfrnn, and report what the docs cite.

Tiny sizes: this checks the machinery (the minimal formulation agrees with the fast backend, every
ratio is formed against the floor measured in the same rounds), not the timings."""
from __future__ import annotations

import json
import sys

import torch

from .benchmark_script import load

bench_products = load("bench_products")
bench_blocks = load("bench_blocks")


def test_floor_bench_reports_every_operation_against_its_floor():
    r = bench_products.floor_bench("addition", T=10, hidden=8, batch=24, rounds=2, peers=False)
    for op in ("product", "product_no_damping", "gradient", "forward", "minimal_product", "minimal_gradient"):
        assert r[f"{op}_ms"] > 0 and r[f"{op}_x_floor"] > 0
    assert r["product_over_minimal"] > 0 and r["block"] >= 24
    r = bench_products.floor_bench("memorization", T=12, hidden=8, batch=24, rounds=1, peers=False)
    assert "minimal_product_ms" not in r and r["gradient_x_floor"] > 0  # the yardstick is addition's loss


def test_block_bench_times_each_block_and_the_automatic_one(tmp_path, monkeypatch):
    out = tmp_path / "blocks.json"
    monkeypatch.setattr(sys, "argv", ["bench_blocks.py", "--T", "10", "--hidden", "8", "--batch", "30",
                                      "--blocks", "7", "30", "0", "--rounds", "1", "--out", str(out)])
    bench_blocks.main()
    data = json.loads(out.read_text())
    assert [r["block"] for r in data["rows"]] == [7, 30, 0]
    # an explicit block of 7 is kept (4 x 7 + 2); 0 = automatic = the whole batch at H = 8
    assert [r["passes"] for r in data["rows"]] == [[7, 7, 7, 7, 2], [30], [30]]
    assert [r["sequences_per_pass"] for r in data["rows"]] == [7, 30, 30]
    assert all(r["product_x_floor"] > 0 and r["gradient_x_floor"] > 0 for r in data["rows"])
    assert data["meta"]["threads"] == torch.get_num_threads()
    assert out.with_suffix(".md").read_text().count("| addition |") == 3
