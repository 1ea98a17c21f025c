"""Diagnostic (not a test): what a memorization run has learned so far, position by position.

    python benchmarks/recall_profile.py <run dir> [--test-size 5000]

Reads the run's checkpoint and resolved config, runs the fixed test set through the network, and
prints for each recall step the mean negative log-likelihood and accuracy of the recalled symbol
(chance: ``log m`` and ``1/m`` for ``m`` symbols), the same for the blank steps, the fraction of
saturated hidden units (``|h| > 0.99``) and the spectral radius of ``W_hh``. A run whose test
error is still 100% may be recalling some positions well above chance: this tells a run that is
slowly learning from one that is stuck.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

from hfrnn.linalg.params import ParamLayout
from hfrnn.models.rnn import RNN, unroll_states
from hfrnn.tasks.pathological import make_task
from hfrnn.train.build import TASK_KEYS


def profile(run_dir: Path, test_size: int) -> dict:
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    cfg = state["config"]
    options = {k: cfg["task"][k] for k in TASK_KEYS if k in cfg["task"]}  # the run's task variants
    task = make_task(cfg["task"]["name"], cfg["T"], **dict(options, test_size=test_size))
    if not hasattr(task, "n_symbols"):
        raise SystemExit(f"{run_dir}: task {task.name} is not a memorization task")
    model = RNN(task.n_in, cfg["hidden"], task.n_out)
    layout = ParamLayout.of(dict(model.named_parameters()))
    p = layout.unflatten(state["theta"].float())
    test = task.test_set()
    with torch.no_grad():
        s, h = unroll_states(p, test.inputs)
    target = test.targets.argmax(-1)
    nll = -torch.log_softmax(s, -1).gather(-1, target.unsqueeze(-1)).squeeze(-1)
    right = (s.argmax(-1) == target).float()
    recall = slice(task.trigger_step + 1, task.trigger_step + 1 + task.n_steps)
    blank = slice(0, task.trigger_step + 1)
    return {
        "run": str(run_dir), "task": task.name, "T": cfg["T"], "minibatches": state["counters"]["minibatches"],
        "recall_nll": [round(float(v), 3) for v in nll[recall].mean(1)],
        "recall_accuracy": [round(float(v), 3) for v in right[recall].mean(1)],
        "chance_nll": round(math.log(task.n_symbols), 3), "chance_accuracy": round(1 / task.n_symbols, 3),
        "blank_nll": float(nll[blank].mean()), "blank_accuracy": float(right[blank].mean()),
        "sequences_all_right": float(right[recall].prod(0).mean()),
        "saturated_fraction": float((h.abs() > 0.99).float().mean()),
        "W_hh_spectral_radius": float(torch.linalg.eigvals(p["W_hh"]).abs().max()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--test-size", type=int, default=5000)
    a = ap.parse_args()
    torch.set_num_threads(1)
    print(json.dumps(profile(a.run_dir, a.test_size)))


if __name__ == "__main__":
    main()
