"""The training loop: read top to bottom.

Work is counted in the paper's unit (one minibatch = 1,000 sequences through a gradient or a
curvature product; forward-only evaluations separately). The loop stops when the test error rate
falls below the success threshold (``solved``), when the budget is spent (``budget_exhausted``),
after too many consecutive rejected steps (``diverged``), on SIGINT/SIGTERM (``interrupted``) or
on an exception (``error``). Every outcome writes ``result.json`` atomically and a checkpoint.
A first SIGINT/SIGTERM stops the run after the current iteration; a second abandons it at once;
any later one, and any that arrives while the run writes its checkpoint and result, is ignored.
A run that cannot write its files ends as ``error`` where ``result.json`` can still be written,
else raises :class:`hfrnn.train.records.WriteError` (one line).

A fresh run refuses a directory that already holds a run. Resuming a run that ended ``solved`` or
``diverged``, or a ``budget_exhausted`` one whose budget is still spent under the new limits,
changes nothing: the recorded result is returned as it is.

Data-parallel runs (:mod:`hfrnn.parallel`): every rank runs this same loop on the same data, and
the backend sums the ranks' shares of each batch. Only rank 0 evaluates the test set and writes
files; the stop decisions only it can make (solved, the wall clock) are shared every iteration.
"""
from __future__ import annotations

import json
import logging
import math
import os
import platform
import signal
import time
from pathlib import Path

import torch

from .. import __version__
from ..config import ConfigError, TrainConfig
from ..provenance import source_revision
from ..curvature.blocking import auto_block
from ..linalg.params import ParamLayout
from ..models.rnn import RNN, unroll_states
from ..optim.hessian_free import HessianFree, hf_info_dict
from ..parallel import dist
from .build import make_backend, make_model, make_optimizer, make_task, resolve_device
from .evaluate import evaluate
from . import checkpoint as ckpt
from .records import MetricsWriter, WriteError, refuse_if_held, write_json_atomic

log = logging.getLogger(__name__)
DTYPES = {"float32": torch.float32, "float64": torch.float64}
LOSS_UNIT = ("train_loss, test_loss: per sequence (the paper's objective: summed over scored steps, mean over "
             "sequences); *_loss_per_step: the same divided by the mean scored steps per sequence")


# A resume of a run that ended so trains no further (it reports the recorded result).
FINAL_STATUSES = ("solved", "diverged")


class _Interrupted(Exception):
    pass


class _NonFinite(Exception):
    """The parameters became non-finite (an optimiser let a NaN through): the iteration is dropped."""


class _NoMetrics:
    """What ranks other than 0 write metrics to."""

    def write(self, record: dict) -> None:
        pass

    def close(self) -> None:
        pass


class _StopRequest:
    """SIGINT/SIGTERM handler: the first signal asks the loop to stop after the current iteration;
    a second one abandons the iteration at once (raised once: later signals are ignored).

    Raising from the first signal is not safe: it can land inside ``logging``'s ``emit``, which
    swallows exceptions, and the interrupt would be lost. After :meth:`finish` (the run is
    writing its checkpoint and result) every signal is ignored, until the handlers are restored.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signal: str | None = None
        self.ignored = 0  # signals that came after the one that abandoned the iteration, or too late
        self._raised = self._finishing = False
        self._old: dict = {}

    def __call__(self, signum, frame) -> None:
        if self._finishing or self._raised:
            self.ignored += 1
            return
        if self.signal is not None:
            self._raised = True
            raise _Interrupted(signal.Signals(signum).name)
        self.signal = signal.Signals(signum).name

    def finish(self) -> None:
        """From now on signals are ignored: the run is writing what it must not lose."""
        self._finishing = True

    def __enter__(self) -> "_StopRequest":
        try:
            self._old = {s: signal.signal(s, self) for s in self.SIGNALS}
        except ValueError:  # not the main thread: signals cannot be caught here
            self._old = {}
        return self

    def __exit__(self, *exc) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)


def outputs_fn(model: torch.nn.Module, layout: ParamLayout):
    """``(theta, x) -> s`` for evaluation."""
    if isinstance(model, RNN):
        return lambda theta, x: unroll_states(layout.unflatten(theta), x)[0]
    from torch.func import functional_call
    return lambda theta, x: functional_call(model, layout.unflatten(theta), (x,))[0]


def _auto_eval_chunk(model: torch.nn.Module, test, device: torch.device, dtype: torch.dtype) -> int:
    """``eval.chunk=0``: the RNN's cache-sized block (hfrnn.curvature.blocking), else 2000."""
    if not isinstance(model, RNN) or test is None:
        return 2000
    return auto_block(test.mask.shape[0], model.W_hh.shape[0], dtype, device) or 2000


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: torch.device) -> dict:
    return {"platform": platform.platform(), "processor": _cpu_model(), "cores": os.cpu_count(),
            "python": platform.python_version(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "device": str(device), "processes": dist.world_size(),
            "cuda": torch.cuda.get_device_name(0) if device.type == "cuda" else None}


def _read_result(run_dir: Path) -> dict | None:
    """The run's ``result.json``, or None when there is none (or it does not parse)."""
    try:
        res = json.loads((Path(run_dir) / "result.json").read_text())
    except (OSError, ValueError):
        return None
    return res if isinstance(res, dict) else None


def budget_spent(counters: dict, budget, wall: bool = True) -> bool:
    """True when ``counters`` have reached one of the ``budget.*`` limits (the wall clock too if ``wall``)."""
    return (counters["minibatches"] >= budget.max_minibatches - 1e-6  # sums of 0.1s are inexact
            or (budget.max_iterations is not None and counters["iteration"] >= budget.max_iterations)
            or (wall and budget.max_wall_s is not None and counters["wall_s"] >= budget.max_wall_s))


def _nothing_to_do(run_dir: Path, counters: dict, cfg: TrainConfig) -> dict | None:
    """The recorded result of a finished run that a resume must leave as it is, else None."""
    previous = _read_result(run_dir)
    if previous is None or previous.get("iterations") != counters["iteration"]:
        return None  # no result, or one older than the checkpoint (a later segment was killed)
    status = previous.get("status")
    if status in FINAL_STATUSES:
        why = f"it ended {status}"
    elif status == "budget_exhausted" and budget_spent(counters, cfg.budget):
        why = "its budget is spent under these limits too (raise budget.* to continue)"
    else:
        return None
    log.info("resume %s: nothing to do, %s after %d iterations; its files are unchanged",
             run_dir, why, counters["iteration"])
    return {**previous, "note": f"nothing to do: {why}"}


def _restore(saved: dict, run_dir: Path, theta: torch.Tensor, opt, data_gen: torch.Generator) -> None:
    """Load a checkpoint's state; a checkpoint with the wrong contents is "unreadable" (one line)."""
    try:
        if saved["theta"].shape != theta.shape:
            raise ValueError(f"theta has {saved['theta'].numel()} parameters, this model {theta.numel()}")
        theta.copy_(saved["theta"])
        opt.load_state_dict(saved["optimizer"])
        data_gen.set_state(saved["data_rng"])
        torch.set_rng_state(saved["torch_rng"])
    except (KeyError, IndexError, TypeError, ValueError, AttributeError, RuntimeError) as e:
        raise ckpt.unreadable(run_dir, e) from None


def fit(cfg: TrainConfig, run_dir: Path, resolved_config: dict) -> dict:
    """Train one run in ``run_dir`` (or continue ``cfg.resume``); returns the result record.

    The record is also written to ``result.json``; a checkpoint is written every
    ``checkpoint_every`` iterations and at the end, whatever the outcome.
    """
    saved = None
    main = dist.rank() == 0  # the rank that evaluates and writes files
    if cfg.resume:
        run_dir = Path(cfg.resume)
        saved = ckpt.load(run_dir)
        ckpt.check_compatible(saved["config"], resolved_config)
        done = _nothing_to_do(run_dir, {"iteration": 0, "minibatches": 0.0, "forward_evals": 0.0,
                                        "wall_s": 0.0, **saved["counters"]}, cfg)
        if done is not None:
            return done if main else {"status": done.get("status"), "message": done.get("note", ""),
                                      "iterations": done.get("iterations"), "rank": dist.rank()}
        log.info("resuming %s at iteration %d", run_dir, saved["counters"]["iteration"])
    run_dir = Path(run_dir)
    if saved is None and main:
        refuse_if_held(run_dir)  # checked again, atomically, when metrics.jsonl is created
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    device, dtype = dist.rank_device(resolve_device(cfg.device)), DTYPES[cfg.dtype]
    task = make_task(cfg)
    model = make_model(cfg, task).to(device=device, dtype=dtype)
    layout = ParamLayout.of(dict(model.named_parameters()))
    theta = layout.flatten({k: v.detach() for k, v in model.named_parameters()}).clone()
    if saved is None and not bool(theta.isfinite().all()):
        m = cfg.model
        raise ConfigError(f"the initial parameters are not finite (model.input_scale={m.input_scale}, "
                          f"model.init_scale={m.init_scale})")
    backend = make_backend(cfg, model, task)
    opt = make_optimizer(cfg, theta, backend, task)
    data_gen = torch.Generator().manual_seed(cfg.seed)
    counters = {"iteration": 0, "minibatches": 0.0, "forward_evals": 0.0, "wall_s": 0.0,
                "last_eval_minibatches": -math.inf}
    last_test: dict = {}
    if saved is not None:
        _restore(saved, run_dir, theta, opt, data_gen)
        counters.update(saved["counters"])
        last_test = dict(saved.get("last_test", {}))  # absent in checkpoints of hfrnn < 0.1.0 final
    test = task.test_set().to(device, dtype) if main else None
    forward = outputs_fn(model, layout)
    eval_chunk = cfg.eval.chunk or _auto_eval_chunk(model, test, device, dtype)
    threshold = cfg.task.success_threshold
    sd = opt.opts.structural if isinstance(opt, HessianFree) else None  # the mu resolved for the task
    mu = f" (structural mu={sd.mu:g})" if sd is not None and sd.enabled else ""
    log.info("task=%s T=%d model=%s(%d params) optimizer=%s%s device=%s dtype=%s threads=%d",
             task.name, cfg.T, cfg.model.name, layout.numel, cfg.optimizer.name, mu, device, cfg.dtype,
             torch.get_num_threads())

    def sample(n: int):
        return task.sample(n, data_gen).to(device, dtype)

    def state_now() -> dict:
        return ckpt.Snapshot(theta, opt, counters, last_test, data_gen).state

    def write_checkpoint(state: dict) -> None:
        if main:
            ckpt.save(run_dir, {**state, "config": resolved_config, "version": __version__})

    if not main:
        metrics = _NoMetrics()
    elif saved is None:
        metrics = MetricsWriter(run_dir / "metrics.jsonl", fresh=True)  # claims the directory
    else:
        metrics = MetricsWriter(run_dir / "metrics.jsonl", truncate_after=counters["iteration"])
    status, message = "budget_exhausted", ""
    wall_before = counters["wall_s"]
    t_start = time.monotonic()
    stop = _StopRequest().__enter__()
    try:  # the handlers stay until the checkpoint and result.json are written
        snapshot = state_now()
        try:
            while True:
                if budget_spent(counters, cfg.budget, wall=False):
                    break
                if cfg.budget.max_wall_s is not None and dist.agree(counters["wall_s"] >= cfg.budget.max_wall_s):
                    break  # rank 0's clock decides for all
                snapshot = state_now()  # what an interruption during this iteration falls back to
                info = opt.step(sample)
                if not bool(theta.isfinite().all()):
                    raise _NonFinite(f"the parameters became non-finite in iteration {counters['iteration'] + 1}")
                counters["iteration"] += 1
                counters["minibatches"] += info.minibatches
                counters["forward_evals"] += info.forward_evals
                counters["rejected_steps"] = counters.get("rejected_steps", 0) + (not info.accepted)
                rec = {"iteration": counters["iteration"]}
                if isinstance(opt, HessianFree):
                    rec.update(hf_info_dict(info))
                    rec["train_loss"] = info.loss_after
                else:
                    rec.update(train_loss=info.loss_before, grad_norm=info.grad_norm, accepted=info.accepted,
                               reason=info.reason)
                # train_loss is the paper's objective (per sequence); the per-step mean is for display.
                rec["train_loss_per_step"] = rec["train_loss"] / info.steps_per_sequence
                due = counters["minibatches"] - counters["last_eval_minibatches"] >= cfg.eval.every_minibatches
                if due:
                    if main:
                        last_test = evaluate(forward, theta, task, test, eval_chunk)
                        counters["forward_evals"] += test.size / 1000
                    counters["last_eval_minibatches"] = counters["minibatches"]
                    rec.update(last_test)
                counters["wall_s"] = wall_before + time.monotonic() - t_start
                rec.update(minibatches=counters["minibatches"], forward_evals=counters["forward_evals"],
                           rejected_steps=counters["rejected_steps"], wall_s=round(counters["wall_s"], 3))
                metrics.write(rec)
                if due or (cfg.log_every and counters["iteration"] % cfg.log_every == 0):
                    log.info("it %d  loss/seq %.4g  test_err %s  minibatches %.0f  %.0fs%s", counters["iteration"],
                             rec["train_loss"], f"{last_test.get('test_error_rate', float('nan')):.4f}",
                             counters["minibatches"], counters["wall_s"],
                             f"  lambda {rec['lambda']:.3g} rho {rec['rho']} cg {rec['cg_iters']}"
                             if "lambda" in rec else "")
                solved = main and due and task.has_success_rule and last_test["test_error_rate"] < threshold
                if dist.agree(solved, theta):  # rank 0 evaluated; every rank stops together
                    status = "solved"
                    break
                if opt.consecutive_rejections >= cfg.optimizer.max_rejections:
                    status, message = "diverged", f"{opt.consecutive_rejections} consecutive rejected steps"
                    log.error("run diverged: %s", message)
                    break
                if cfg.checkpoint_every and counters["iteration"] % cfg.checkpoint_every == 0:
                    write_checkpoint(state_now())
                if dist.agree(stop.signal is not None, theta):  # rank 0's signal stops every rank
                    status, message = "interrupted", f"interrupted by {stop.signal or 'rank 0'}"
                    log.warning("run interrupted after iteration %d; checkpoint and result written",
                                counters["iteration"])
                    break
            final_state = state_now()
        except (KeyboardInterrupt, _Interrupted) as e:
            stop.finish()
            status, message = "interrupted", f"interrupted by {type(e).__name__} {e}".strip()
            log.warning("run interrupted: the unfinished iteration is dropped; checkpoint and result written")
            final_state = snapshot
        except _NonFinite as e:
            stop.finish()
            status, message = "diverged", str(e)
            log.error("run diverged: %s; the iteration is dropped", message)
            final_state = snapshot
        except Exception as e:  # recorded, then reported through the exit status
            stop.finish()
            status, message = "error", f"{type(e).__name__}: {e}"
            if isinstance(e, OSError):  # a full or read-only disk: no traceback needed
                log.error("run failed: %s", message)
            else:
                log.exception("run failed")
            final_state = snapshot
        finally:
            stop.finish()
            metrics.close()
        return _finish(cfg, run_dir, main, status, message, final_state, wall_before + time.monotonic() - t_start,
                       write_checkpoint, task, test, forward, eval_chunk, layout, device, dtype, resolved_config)
    finally:
        stop.__exit__()
        if stop.ignored:
            log.warning("%d signal(s) arrived while the run was ending; ignored", stop.ignored)


def _finish(cfg, run_dir, main, status, message, final_state, wall_s, write_checkpoint, task, test, forward,
            eval_chunk, layout, device, dtype, resolved_config) -> dict:
    """Write the final checkpoint and ``result.json`` (the signal handlers are still ignoring)."""
    counters = dict(final_state["counters"], wall_s=wall_s)
    last_test = final_state["last_test"]
    final_state["counters"] = counters
    try:
        write_checkpoint(final_state)  # the state after the last iteration: what a resume continues
    except OSError as e:
        log.error("cannot write %s: %s", run_dir / ckpt.CHECKPOINT, e)
        what = f"cannot write {ckpt.CHECKPOINT}: {e}"
        message = f"{message}; {what}" if status == "error" and message else what
        status = "error"
    stale = not last_test or counters["last_eval_minibatches"] < counters["minibatches"]
    if stale and status != "error" and main:
        # The result reports the final parameters; this evaluation is not part of the checkpoint,
        # so a resumed run repeats exactly the evaluations an uninterrupted one makes.
        last_test = evaluate(forward, final_state["theta"].to(device, dtype), task, test, eval_chunk)
        counters["forward_evals"] += test.size / 1000
    if not main:
        return {"status": status, "message": message, "iterations": counters["iteration"], "rank": dist.rank()}
    result = {
        "task": task.name, "T": cfg.T, "model": cfg.model.name, "optimizer": cfg.optimizer.name,
        "seed": cfg.seed, "status": status, "success": status == "solved", "message": message,
        "iterations": counters["iteration"], "minibatches": counters["minibatches"],
        "forward_evals": counters["forward_evals"], "rejected_steps": counters.get("rejected_steps", 0),
        "wall_s": round(counters["wall_s"], 3), "n_params": layout.numel, "loss_unit": LOSS_UNIT, **last_test,
        "hfrnn_version": __version__, "hfrnn_source": source_revision(), "machine": machine_info(device), "config": resolved_config,
    }
    try:
        write_json_atomic(run_dir / "result.json", result)
    except OSError as e:
        ended = f"{status}: {message}" if message else status
        raise WriteError(f"cannot write {run_dir / 'result.json'} ({e}); the run ended {ended}") from None
    log.info("result: %s after %.0f minibatches, %.0f s -> %s", status, counters["minibatches"],
             counters["wall_s"], run_dir / "result.json")
    return result
