"""The training loop: read top to bottom.

Work is counted in the paper's unit (one minibatch = 1,000 sequences through a gradient or a
curvature product; forward-only evaluations separately). The loop stops when the test error rate
falls below the success threshold (``solved``), when the budget is spent (``budget_exhausted``),
after too many consecutive rejected steps (``diverged``), on SIGINT/SIGTERM (``interrupted``) or
on an exception (``error``). Every outcome writes ``result.json`` atomically and a checkpoint.
Every iteration's record goes to ``metrics.jsonl``; the progress line (:mod:`.progress`) and the
scalar loggers chosen by ``logger=`` (:mod:`.loggers`) get one every ``log_every`` iterations, at
each test evaluation and at the end.
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

import contextlib
import dataclasses
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
from ..api import ModuleOptimizer
from ..errors import ConfigError
from ..optim.hessian_free import HFOptions
from ..parallel import dist
from ..provenance import source_revision
from ..tasks.base import Task, data_description
from . import checkpoint as ckpt
from . import loggers, progress, sweep_stop
from .build import make_model, make_optimizer, make_task, resolve_device
from .evaluate import evaluate
from .lock import run_lock
from .records import FINAL_STATUSES, MetricsWriter, WriteError, refuse_if_held, step_record, write_json_atomic
from .schema import TrainConfig

log = logging.getLogger(__name__)
DTYPES = {"float32": torch.float32, "float64": torch.float64}
LOSS_UNIT = ("train_loss, test_loss: per sequence (the paper's objective: summed over scored steps, mean over "
             "sequences); *_loss_per_step: the same divided by the mean scored steps per sequence")



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


def fit(cfg: TrainConfig, run_dir: Path, resolved_config: dict) -> dict:
    """Train one run in ``run_dir`` (or continue ``cfg.resume``); returns the result record.

    The record is also written to ``result.json``; a checkpoint is written every
    ``checkpoint_every`` iterations and at the end, whatever the outcome.
    """
    with _lock(cfg, Path(run_dir)):  # one process at a time in a run (two sweeps may share it)
        saved, run_dir, done = _open(cfg, Path(run_dir), resolved_config)
        if done is not None:
            return done
        return _train(cfg, run_dir, resolved_config, saved)


def _lock(cfg: TrainConfig, run_dir: Path):
    """Rank 0's lock on the run's directory (:mod:`hfrnn.train.lock`); none where there is no
    directory to resume (``_open`` then says so)."""
    target = Path(cfg.resume) if cfg.resume else run_dir
    if dist.rank() != 0 or (cfg.resume and not target.is_dir()):
        return contextlib.nullcontext()
    target.mkdir(parents=True, exist_ok=True)
    return run_lock(target)


def _train(cfg: TrainConfig, run_dir: Path, resolved_config: dict, saved: dict | None) -> dict:
    run = _Run(with_session_cap(cfg, saved), run_dir, resolved_config, saved)
    stop = _StopRequest().__enter__()
    try:  # the handlers stay until the checkpoint and result.json are written
        status, message, final_state = run.train(stop)
        return run.finish(status, message, final_state)
    finally:
        stop.__exit__()
        if stop.ignored:
            log.warning("%d signal(s) arrived while the run was ending; ignored", stop.ignored)


def with_session_cap(cfg: TrainConfig, saved: dict | None) -> TrainConfig:
    """``cfg`` with ``budget.session_wall_s`` folded into the wall-clock limit this invocation obeys.

    ``budget.max_wall_s`` caps the run's total wall clock (over all its resumes);
    ``budget.session_wall_s`` caps what this invocation adds to it, so running the same command
    again (a sweep continued next day) gives every unfinished run another ``session_wall_s``. A run
    so stopped ends ``budget_exhausted`` with a message that says so, and a later resume is not
    refused as spent: the session cap is not part of the run's budget (:func:`budget_spent`).
    """
    session = cfg.budget.session_wall_s
    if session is None:
        return cfg
    spent = float(saved["counters"].get("wall_s", 0.0)) if saved else 0.0
    cap = spent + session
    if cfg.budget.max_wall_s is not None and cfg.budget.max_wall_s <= cap:
        return cfg
    return dataclasses.replace(cfg, budget=dataclasses.replace(cfg.budget, max_wall_s=cap))


def _open(cfg: TrainConfig, run_dir: Path, resolved_config: dict) -> tuple[dict | None, Path, dict | None]:
    """``(checkpoint or None, the run's directory, the result when a resume has nothing to do)``."""
    if not cfg.resume:
        if dist.rank() == 0:
            refuse_if_held(run_dir)  # checked again, atomically, when metrics.jsonl is created
        return None, run_dir, None
    run_dir = Path(cfg.resume)
    saved = ckpt.load(run_dir)
    ckpt.check_compatible(saved["config"], resolved_config)
    done = _nothing_to_do(run_dir, {"iteration": 0, "minibatches": 0.0, "forward_evals": 0.0, "wall_s": 0.0,
                                    **saved["counters"]}, cfg)
    if done is not None and dist.rank() != 0:
        done = {"status": done.get("status"), "message": done.get("note", ""), "iterations": done.get("iterations"),
                "rank": dist.rank()}
    if done is None:
        log.info("resuming %s at iteration %d", run_dir, saved["counters"]["iteration"])
    return saved, run_dir, done


class _Run:
    """One run's objects and counters, and the steps of the loop (:func:`fit` reads them in order)."""

    def __init__(self, cfg: TrainConfig, run_dir: Path, resolved_config: dict, saved: dict | None) -> None:
        self.cfg, self.run_dir, self.resolved_config = cfg, run_dir, resolved_config
        self.main = dist.rank() == 0  # the rank that evaluates and writes files
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        self.device, self.dtype = dist.rank_device(resolve_device(cfg.device)), DTYPES[cfg.dtype]
        self.task: Task = make_task(cfg)
        model = make_model(cfg, self.task).to(device=self.device, dtype=self.dtype)
        if saved is None and not all(bool(p.isfinite().all()) for p in model.parameters()):
            m = cfg.model
            raise ConfigError(f"the initial parameters are not finite (model.input_scale={m.input_scale}, "
                              f"model.init_scale={m.init_scale})")
        self.opt: ModuleOptimizer = make_optimizer(cfg, model, self.task)
        self.data_gen = torch.Generator().manual_seed(cfg.seed)
        self.counters = {"iteration": 0, "minibatches": 0.0, "forward_evals": 0.0, "wall_s": 0.0,
                         "last_eval_minibatches": -math.inf}
        self.last_test: dict = {}
        if saved is not None:
            self._restore(saved)
        self.test = self.task.test_set().to(self.device, self.dtype) if self.main else None
        self.eval_chunk = cfg.eval.chunk or self.opt.forward_chunk(self.test.T if self.test is not None else cfg.T)
        log.info("task=%s T=%d model=%s(%d params) optimizer=%s%s device=%s dtype=%s threads=%d",
                 self.task.name, cfg.T, cfg.model.name, self.opt.layout.numel, cfg.optimizer.name,
                 self.opt.describe(), self.device, cfg.dtype, torch.get_num_threads())
        # Checked before metrics.jsonl claims the directory, so a refused logger leaves it free.
        logger_names = loggers.check(cfg.logger) if self.main else ()
        if not self.main:
            self.metrics = _NoMetrics()
        elif saved is None:
            self.metrics = MetricsWriter(run_dir / "metrics.jsonl", fresh=True)  # claims the directory
        else:
            self.metrics = MetricsWriter(run_dir / "metrics.jsonl", truncate_after=self.counters["iteration"])
        self.loggers = loggers.Loggers(logger_names, run_dir, None if saved is None else self.counters["iteration"])
        self.log_every = progress.resolve_log_every(cfg.log_every, isinstance(cfg.optimizer, HFOptions))
        self.unreported: dict | None = None  # the last record, until the progress line and loggers have it
        self.wall_before, self.t_start = self.counters["wall_s"], time.monotonic()

    def _restore(self, saved: dict) -> None:
        """Load a checkpoint's state; a checkpoint with the wrong contents is "unreadable" (one line)."""
        try:
            if saved["theta"].shape != (self.opt.layout.numel,):
                raise ValueError(f"theta has {saved['theta'].numel()} parameters, this model {self.opt.layout.numel}")
            self.opt.load_flat(saved["theta"])
            self.opt.load_state_dict(saved["optimizer"])
            self.data_gen.set_state(saved["data_rng"])
            torch.set_rng_state(saved["torch_rng"])
        except (KeyError, IndexError, TypeError, ValueError, AttributeError, RuntimeError) as e:
            raise ckpt.unreadable(self.run_dir, e) from None
        self.counters.update(saved["counters"])
        self.last_test = dict(saved.get("last_test", {}))  # absent in checkpoints of hfrnn < 0.1.0 final

    # -- the steps ----------------------------------------------------------------------------------
    def state(self) -> dict:
        """What a checkpoint holds now (also what an interrupted iteration falls back to)."""
        return ckpt.Snapshot(self.opt.flat(), self.opt, self.counters, self.last_test, self.data_gen).state

    def checkpoint(self, state: dict) -> None:
        if self.main:
            self.loggers.flush()  # everything the checkpoint covers is on disk (resume cuts the rest)
            ckpt.save(self.run_dir, {**state, "config": self.resolved_config, "version": __version__})

    def out_of_budget(self) -> bool:
        if budget_spent(self.counters, self.cfg.budget, wall=False):
            return True
        wall = self.cfg.budget.max_wall_s
        return wall is not None and dist.agree(self.counters["wall_s"] >= wall)  # rank 0's clock decides for all

    def iterate(self) -> dict:
        """One optimiser step on fresh batches; returns its ``metrics.jsonl`` record."""
        info = self.opt.step(*(self.sample(n) for n in self.opt.batch_sizes))
        if not bool(self.opt.flat().isfinite().all()):
            raise _NonFinite(f"the parameters became non-finite in iteration {self.counters['iteration'] + 1}")
        c = self.counters
        c["iteration"] += 1
        c["minibatches"] += info.minibatches
        c["forward_evals"] += info.forward_evals
        c["rejected_steps"] = c.get("rejected_steps", 0) + (not info.accepted)
        rec = {"iteration": c["iteration"], **step_record(info)}
        # train_loss is the paper's objective (per sequence); the per-step mean is for display.
        rec["train_loss_per_step"] = rec["train_loss"] / info.steps_per_sequence
        return rec

    def sample(self, n: int):
        return self.task.sample(n, self.data_gen).to(self.device, self.dtype)

    def evaluate_if_due(self, rec: dict) -> bool:
        """Evaluate the test set (rank 0) when ``eval.every_minibatches`` of work have passed since the last time."""
        c = self.counters
        due = c["minibatches"] - c["last_eval_minibatches"] >= self.cfg.eval.every_minibatches
        if due:
            if self.main:
                self.last_test = self.evaluate(self.opt.flat())
            c["last_eval_minibatches"] = c["minibatches"]
            rec.update(self.last_test)
        return due

    def evaluate(self, theta: torch.Tensor) -> dict:
        out = evaluate(lambda th, x: self.opt.outputs(x, th), theta, self.task, self.test, self.eval_chunk)
        self.counters["forward_evals"] += self.test.size / 1000
        return out

    def write(self, rec: dict, due: bool) -> None:
        """The iteration's line in ``metrics.jsonl`` (every iteration); the progress line and the
        loggers' record at evaluations and every ``log_every`` iterations (:meth:`report`)."""
        c = self.counters
        c["wall_s"] = self.wall_before + time.monotonic() - self.t_start
        rec.update(minibatches=c["minibatches"], forward_evals=c["forward_evals"], rejected_steps=c["rejected_steps"],
                   wall_s=round(c["wall_s"], 3))
        self.metrics.write(rec)
        self.unreported = rec
        if due or (self.log_every and c["iteration"] % self.log_every == 0):
            self.report()

    def report(self) -> None:
        """The last record to the loggers, and its progress line (rank 0)."""
        rec, self.unreported = self.unreported, None
        if rec is None or not self.main:
            return
        self.loggers.write(rec)
        log.info("%s", progress.line(rec, self.counters, self.cfg.budget, self.last_test))

    def close_records(self) -> None:
        """Close metrics.jsonl; report the segment's last iteration if it was between log lines, and
        close the loggers (a logger that cannot write then is logged, the outcome stands)."""
        self.metrics.close()
        try:
            self.report()
        except OSError as e:
            log.error("cannot write the last record to the loggers: %s", e)
        self.loggers.close()

    def outcome(self, due: bool) -> tuple[str, str] | None:
        """``(status, message)`` when the run is solved or has diverged, else None."""
        solved = (self.main and due and self.task.has_success_rule
                  and self.last_test["test_error_rate"] < self.cfg.task.success_threshold)
        if dist.agree(solved, self.opt.flat()):  # rank 0 evaluated; every rank stops together
            return "solved", ""
        n = self.opt.consecutive_rejections
        if n >= self.cfg.optimizer.max_rejections:
            log.error("run diverged: %d consecutive rejected steps", n)
            return "diverged", f"{n} consecutive rejected steps"
        return None

    def budget_message(self) -> str:
        """Why a run out of budget stopped, when it was this invocation's cap and not the run's budget."""
        user = self.cfg.budget  # with the session cap folded in (with_session_cap)
        session = self.resolved_config.get("budget", {}).get("session_wall_s")
        if (session is not None and user.max_wall_s is not None and self.counters["wall_s"] >= user.max_wall_s
                and not budget_spent(self.counters, user, wall=False)
                and user.max_wall_s != self.resolved_config["budget"].get("max_wall_s")):
            return (f"stopped by budget.session_wall_s={session:g} (this invocation's share): "
                    "running the same command again continues it")
        return ""

    def train(self, stop: _StopRequest) -> tuple[str, str, dict]:
        """Iterate until an outcome; returns ``(status, message, the state to save)``."""
        snapshot = self.state()
        try:
            while not self.out_of_budget():
                snapshot = self.state()  # what an interruption during this iteration falls back to
                rec = self.iterate()
                due = self.evaluate_if_due(rec)
                self.write(rec, due)
                ended = self.outcome(due)
                if ended:
                    return (*ended, self.state())
                if self.cfg.checkpoint_every and self.counters["iteration"] % self.cfg.checkpoint_every == 0:
                    self.checkpoint(self.state())
                # rank 0's signal (or its sweep's stop, hfrnn.train.sweep_stop) stops every rank
                if dist.agree(stop.signal is not None or sweep_stop.requested(), self.opt.flat()):
                    log.warning("run interrupted after iteration %d; checkpoint and result written",
                                self.counters["iteration"])
                    why = stop.signal or ("the sweep's stop" if sweep_stop.requested() else "rank 0")
                    return "interrupted", f"interrupted by {why}", self.state()
            return "budget_exhausted", self.budget_message(), self.state()
        except (KeyboardInterrupt, _Interrupted) as e:
            stop.finish()
            log.warning("run interrupted: the unfinished iteration is dropped; checkpoint and result written")
            return "interrupted", f"interrupted by {type(e).__name__} {e}".strip(), snapshot
        except _NonFinite as e:
            stop.finish()
            log.error("run diverged: %s; the iteration is dropped", e)
            return "diverged", str(e), snapshot
        except Exception as e:  # recorded, then reported through the exit status
            stop.finish()
            if isinstance(e, OSError):  # a full or read-only disk: no traceback needed
                log.error("run failed: %s: %s", type(e).__name__, e)
            else:
                log.exception("run failed")
            return "error", f"{type(e).__name__}: {e}", snapshot
        finally:
            stop.finish()
            self.close_records()

    def finish(self, status: str, message: str, final_state: dict) -> dict:
        """Write the final checkpoint and ``result.json`` (the signal handlers are still ignoring)."""
        counters = dict(final_state["counters"], wall_s=self.wall_before + time.monotonic() - self.t_start)
        final_state["counters"] = self.counters = counters
        try:
            self.checkpoint(final_state)  # the state after the last iteration: what a resume continues
        except OSError as e:
            log.error("cannot write %s: %s", self.run_dir / ckpt.CHECKPOINT, e)
            what = f"cannot write {ckpt.CHECKPOINT}: {e}"
            message = f"{message}; {what}" if status == "error" and message else what
            status = "error"
        last_test = final_state["last_test"]
        stale = not last_test or counters["last_eval_minibatches"] < counters["minibatches"]
        if stale and status != "error" and self.main:
            # The result reports the final parameters; this evaluation is not part of the checkpoint,
            # so a resumed run repeats exactly the evaluations an uninterrupted one makes.
            last_test = self.evaluate(final_state["theta"].to(self.device, self.dtype))
        if not self.main:
            return {"status": status, "message": message, "iterations": counters["iteration"], "rank": dist.rank()}
        result = self.result(status, message, last_test)
        try:
            write_json_atomic(self.run_dir / "result.json", result)
        except OSError as e:
            ended = f"{status}: {message}" if message else status
            raise WriteError(f"cannot write {self.run_dir / 'result.json'} ({e}); the run ended {ended}") from None
        log.info("result: %s after %.0f minibatches, %.0f s -> %s", status, counters["minibatches"],
                 counters["wall_s"], self.run_dir / "result.json")
        return result

    def result(self, status: str, message: str, last_test: dict) -> dict:
        """The ``result.json`` record (DESIGN.md, "Output files")."""
        cfg, c = self.cfg, self.counters
        data = data_description(self.task)
        return {
            "task": self.task.name, "T": cfg.T, "model": cfg.model.name, "optimizer": cfg.optimizer.name,
            "seed": cfg.seed, "status": status, "success": status == "solved", "message": message,
            "iterations": c["iteration"], "minibatches": c["minibatches"], "forward_evals": c["forward_evals"],
            "rejected_steps": c.get("rejected_steps", 0), "wall_s": round(c["wall_s"], 3),
            "n_params": self.opt.layout.numel, "loss_unit": LOSS_UNIT, **last_test,
            **({"data": data} if data is not None else {}),
            "hfrnn_version": __version__, "hfrnn_source": source_revision(), "machine": machine_info(self.device),
            "config": self.resolved_config,
        }
