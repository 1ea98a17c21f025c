"""Print the README's per-run results table from ``result.json`` files.

    python benchmarks/results_table.py outputs/multirun/hf_T30 outputs/multirun/hf_T50 ...

One row per run: task, T, optimizer, seed, status, minibatches (to success, or spent), HF
iterations, wall time, final test error rate, machine. Reads only the JSON files.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def rows(dirs: list[str]) -> list[dict]:
    out = []
    for d in dirs:
        for p in sorted(Path(d).rglob("result.json")):
            r = json.loads(p.read_text())
            m = r.get("machine", {})
            out.append({"task": r["task"], "T": r["T"], "optimizer": r["optimizer"], "seed": r["seed"],
                        "status": r["status"], "minibatches": r["minibatches"], "iterations": r.get("iterations"),
                        "wall_s": r["wall_s"], "err": r.get("test_error_rate"),
                        "machine": f"{m.get('processor') or m.get('platform', '?')}, {m.get('threads')} thread(s)",
                        "dir": str(p.parent)})
    return out


def main() -> None:
    print("| task | T | optimizer | seed | result | minibatches | iterations | wall time | test error | run dir |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows(sys.argv[1:]):
        err = "" if r["err"] is None else f"{100 * r['err']:.2f}%"
        print(f"| {r['task']} | {r['T']} | {r['optimizer']} | {r['seed']} | {r['status']} | {r['minibatches']:,.0f} "
              f"| {r['iterations']} | {r['wall_s'] / 60:.1f} min | {err} | `{r['dir']}` |")


if __name__ == "__main__":
    main()
