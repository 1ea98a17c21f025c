"""Helpers (no tests): run directories as `hfrnn train` writes them, for the report tests (old and new file formats)."""
from __future__ import annotations

import json
from pathlib import Path

NEW_UNIT = ("train_loss, test_loss: per sequence (the paper's objective: summed over scored steps, mean over "
            "sequences); *_loss_per_step: the same divided by the mean scored steps per sequence")


def new_format(version: str) -> bool:
    return tuple(int(p) for p in version.split(".")[:2]) >= (0, 3)


def eval_fields(version: str, loss_per_step: float, steps: float = 10.0, error: float | None = None,
                **extra) -> dict:
    """The ``test_*`` fields of an evaluation: per sequence from 0.3 on, per step before."""
    out = ({"test_loss": loss_per_step * steps, "test_loss_per_step": loss_per_step} if new_format(version)
           else {"test_loss": loss_per_step})
    if error is not None:
        out["test_error_rate"] = error
    return {**out, **extra}


def write_run(root: Path, name: str, *, task: str = "addition", T: int = 30, model: str = "rnn", opt: str = "hf",
              seed: int = 0, status: str | None = "solved", minibatches: float = 1000.0, wall_s: float = 10.0,
              version: str = "0.3.0", evals: list[tuple[float, dict]] | None = None, final: dict | None = None,
              result_extra: dict | None = None, hf: bool | None = None, config_yaml: str | None = None) -> Path:
    """One run directory: ``.hydra/config.yaml``, ``metrics.jsonl`` (one record per ``evals`` entry:
    ``(minibatches, test fields)``, plus HF fields for HF optimizers) and ``result.json`` (unless
    ``status`` is None) whose test fields are ``final`` (default: the last evaluation's)."""
    d = root / name
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "config.yaml").write_text(config_yaml if config_yaml is not None else (
        f"task:\n  name: {task}\n  success_threshold: 0.01\n  options: {{}}\nmodel:\n  name: {model}\n"
        f"optimizer:\n  name: {opt}\nT: {T}\nseed: {seed}\nhidden: 100\n"
        f"budget:\n  max_minibatches: 50000.0\n  max_wall_s: null\ndata:\n  path: null\n"))
    hf = opt.startswith("hf") if hf is None else hf
    evals = evals if evals is not None else [(minibatches, eval_fields(version, 0.1, error=0.0))]
    with open(d / "metrics.jsonl", "w") as fh:
        for i, (mb, tests) in enumerate(evals, 1):
            rec = {"iteration": i, "minibatches": mb, "wall_s": wall_s * mb / max(minibatches, 1.0),
                   "train_loss": 1.0 / i}
            if new_format(version):
                rec["train_loss_per_step"] = 0.1 / i
            if hf:
                rec.update({"lambda": 0.1 / i, "rho": 0.5, "cg_iters": 10 * i})
            fh.write(json.dumps({**rec, **tests}) + "\n")
    if status is not None:
        res = {"task": task, "T": T, "model": model, "optimizer": opt, "seed": seed, "status": status,
               "success": status == "solved", "message": "boom" if status == "error" else "",
               "iterations": len(evals), "minibatches": minibatches, "wall_s": wall_s, "hfrnn_version": version,
               **(final if final is not None else (evals[-1][1] if evals else {})),
               "config": {"task": {"name": task, "success_threshold": 0.01, "options": {}}, "model": {"name": model},
                          "optimizer": {"name": opt}, "T": T, "seed": seed, "hidden": 100,
                          "budget": {"max_minibatches": 50000.0}, "data": {"path": None}}}
        if new_format(version):
            res["loss_unit"] = NEW_UNIT
        res.update(result_extra or {})
        (d / "result.json").write_text(json.dumps(res))
    return d
