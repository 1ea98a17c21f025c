"""The SGD baseline grid as a table: every (lr, momentum) per (task, T), the best setting, and HF beside it.

    python benchmarks/sgd_grid_table.py outputs/multirun/sgd_grid [--hf DIR ...] [--out FILE]

Reads each run's ``result.json`` (recursively) and takes lr and momentum from its recorded config.
A cell says ``solved N`` (minibatches to success, the paper's unit: one SGD step on 100 sequences
is 0.1 minibatch), ``stopped N (e%)`` (a budget or wall-clock cap before the 50,000-minibatch
failure line; e = the last test error rate), ``failed``, ``diverged``, ``interrupted`` (resumable)
or ``running`` (no result yet). The best setting of a cell is the solved run with the fewest minibatches,
else the lowest last test error. ``--hf`` adds HF's outcome for the same (task, T) from other run
directories (e.g. outputs/multirun/figure3_small, results/...).
"""
from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from pathlib import Path

FAILURE_LIMIT = 50000.0


def read(root: Path) -> list[dict]:
    out = []
    for p in sorted(Path(root).rglob("result.json")):
        if "previous-" in str(p):
            continue
        try:
            r = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(r, dict) and r.get("task"):
            r["_dir"] = str(p.parent)
            out.append(r)
    return out


def outcome(r: dict) -> tuple[str, tuple]:
    """(cell text, sort key: smaller is better)."""
    mb, err, status = float(r.get("minibatches") or 0), r.get("test_error_rate"), r.get("status")
    e = float(err) if isinstance(err, (int, float)) and math.isfinite(err) else 1.0
    if status == "solved":
        return f"**solved {mb:,.0f}**", (0, mb)
    if status == "budget_exhausted" and mb < FAILURE_LIMIT - 1e-6:
        return f"stopped {mb:,.0f} ({100 * e:.1f}%)", (1, e)
    if status == "budget_exhausted":
        return f"failed ({100 * e:.1f}%)", (1, e)
    if status == "diverged":
        return "diverged", (2, e)
    if status == "interrupted":
        return f"interrupted {mb:,.0f} ({100 * e:.1f}%)", (1, e)
    return f"running {mb:,.0f} ({100 * e:.1f}%)", (1, e)


def setting(r: dict) -> str:
    o = (r.get("config") or {}).get("optimizer") or {}
    return f"lr {o.get('lr'):g}, m {o.get('momentum'):g}"


def table(sgd: list[dict], hf: list[dict]) -> str:
    cells: dict[tuple, dict[str, dict]] = defaultdict(dict)
    for r in sgd:
        if r.get("optimizer") == "sgd":
            cells[(r["task"], int(r["T"]))][setting(r)] = r
    settings = sorted({s for c in cells.values() for s in c}, key=lambda s: [float(x.split()[1]) for x in s.split(", ")])
    hf_by = defaultdict(list)
    for r in hf:
        if r.get("optimizer") == "hf" and r.get("model", "rnn") == "rnn":
            hf_by[(r["task"], int(r["T"]))].append(r)
    head = ["task", "T", *settings, "best SGD", "HF (seeds)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key in sorted(cells, key=lambda k: (k[0], k[1])):
        row = cells[key]
        texts = [outcome(row[s])[0] if s in row else "" for s in settings]
        best = min(row, key=lambda s: outcome(row[s])[1])
        hf_text = ", ".join(f"s{r['seed']}: {outcome(r)[0]}" for r in sorted(hf_by.get(key, []), key=lambda r: r["seed"]))
        lines.append("| " + " | ".join([key[0], str(key[1]), *texts, f"{best}: {outcome(row[best])[0]}",
                                        hf_text or "-"]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path)
    ap.add_argument("--hf", type=Path, nargs="*", default=[])
    ap.add_argument("--out", type=Path)
    a = ap.parse_args(argv)
    text = table(read(a.root), [r for d in a.hf for r in read(d)])
    if a.out:
        a.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
