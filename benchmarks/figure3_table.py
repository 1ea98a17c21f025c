"""Figure 3 as one Markdown matrix: problem x T, each cell the HF runs' outcomes by seed.

    python benchmarks/figure3_table.py results/v0.3/figure3_small results/v0.4/long_range/figure3 [--optimizer hf]

A cell lists its runs as ``s<seed>: solved N`` (minibatches to success), ``stopped N (e%)`` (a
budget or wall-clock cap before the 50,000-minibatch failure line, e = the last test error rate),
``failed`` or ``running``; several seeds of a solved cell are summarised as ``k/n: mean (min-max)``.
Reads every ``result.json`` below the given folders (the same reader as sgd_grid_table.py).
"""
from __future__ import annotations

import argparse
import statistics
from collections import defaultdict
from pathlib import Path

from sgd_grid_table import outcome, read

ORDER = ("addition", "multiplication", "temporal_order", "temporal_order_3bit", "random_permutation", "xor",
         "memorization", "memorization_20bit")


def cell(runs: list[dict]) -> str:
    if not runs:
        return ""
    runs = sorted(runs, key=lambda r: r["seed"])
    solved = [r for r in runs if r["status"] == "solved"]
    if len(runs) > 1 and len(solved) == len(runs):
        mbs = [float(r["minibatches"]) for r in solved]
        return f"{len(solved)}/{len(runs)}: {statistics.mean(mbs):,.0f} ({min(mbs):,.0f}-{max(mbs):,.0f})"
    return "; ".join(f"s{r['seed']}: {outcome(r)[0]}" for r in runs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dirs", type=Path, nargs="+")
    ap.add_argument("--optimizer", default="hf")
    a = ap.parse_args(argv)
    by = defaultdict(list)
    seen = set()
    for d in a.dirs:
        for r in read(d):
            key = (r["task"], int(r["T"]), r["seed"])
            if r.get("optimizer") == a.optimizer and r.get("model", "rnn") == "rnn" and key not in seen:
                seen.add(key)
                by[(r["task"], int(r["T"]))].append(r)
    Ts = sorted({T for _, T in by})
    tasks = [t for t in ORDER if any((t, T) in by for T in Ts)]
    print("| problem | " + " | ".join(f"T = {T}" for T in Ts) + " |")
    print("|---|" + "---|" * len(Ts))
    for t in tasks:
        print(f"| {t} | " + " | ".join(cell(by.get((t, T), [])) or "not run" for T in Ts) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
