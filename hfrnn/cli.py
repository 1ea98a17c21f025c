"""The ``hfrnn`` console entry point: the first word picks a Hydra app.

    hfrnn train [overrides...]   # one run, or a sweep with -m
    hfrnn data KIND [overrides]  # build data/<name>.h5 from raw sources
    hfrnn report DIR             # tables and plots from a sweep's files

Everything after the word is Hydra's (overrides, ``-m``, ``--cfg job``, ``--help``).
"""
from __future__ import annotations

import difflib
import logging
import os
import shutil
import sys
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from .config import LAUNCHER_HINT, ConfigError, check_overrides, group_choices, register, sweep_size, validate


def config_dir() -> str:
    """The folder of the YAML config groups: ``hfrnn/configs/`` in an installed wheel (setup.py
    maps the repository's ``configs/`` there), else ``configs/`` beside the package in a checkout
    (an editable install)."""
    package = Path(__file__).resolve().parent
    for d in (package / "configs", package.parent / "configs"):
        if (d / "train.yaml").is_file():
            return str(d)
    raise SystemExit(f"hfrnn: error: no configs found (looked in {package / 'configs'} and {package.parent / 'configs'}); "
                     "reinstall hfrnn")


CONFIG_DIR = config_dir()
COMMANDS = ("train", "data", "report")
log = logging.getLogger("hfrnn")

register()

# The jobs of a multirun that ran in this process: (job dir, None or the failure's message).
_JOBS: list[tuple[Path, str | None]] = []


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def train_app(cfg: DictConfig) -> float | None:
    """Hydra task function of ``hfrnn train``; returns the minibatches used (for sweepers).

    A single run that fails exits at once with a one-line message (status 2 for a refused
    config, 1 otherwise). A job of a multirun that fails instead records ``result.json`` with
    ``status: error`` in its own directory and returns, so the sweep goes on; :func:`main`
    exits non-zero at the end.
    """
    from .train.launch import fit_distributed, wants_distributed
    from .train.loop import fit
    from .train.records import WriteError
    from .train.checkpoint import check_compatible
    from .train import sweep_stop
    from .train.sweep import continue_job

    hydra_cfg = HydraConfig.get()
    hydra_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    if multirun:
        sweep_stop.guard_worker()
        if sweep_stop.requested():  # the sweep is stopping: a job not yet started does nothing
            log.info("%s: not started, the sweep is stopping", hydra_dir)
            _discard_unused_run_dir(hydra_dir)
            return None
    run_dir, fresh, job = hydra_dir, True, None
    try:
        typed = OmegaConf.to_object(cfg)
        validate(typed)
        if multirun:
            _job_label(hydra_cfg)
            job = None if typed.resume else continue_job(hydra_dir)
            if job is not None and job.action == "resume":
                typed.resume = str(hydra_dir)  # a sweep run again: this job's run continues (or is done)
        # A resumed run continues in its own directory, not in the new one Hydra made.
        run_dir, fresh = (Path(typed.resume), False) if typed.resume else (hydra_dir, True)
        if multirun and job is not None and job.action == "done":
            check_compatible(job.result.get("config") or {}, OmegaConf.to_container(cfg, resolve=True))
            log.info("%s: nothing to do, it ended %s; its files are unchanged", hydra_dir, job.result.get("status"))
            result = {**job.result, "note": f"nothing to do: it ended {job.result.get('status')}"}
        elif wants_distributed(typed):  # dist.procs > 1, or started by torchrun
            result = fit_distributed(typed, run_dir, OmegaConf.to_container(cfg, resolve=True))
            if result is None:  # a torchrun rank other than 0: rank 0 reports
                return None
        else:
            result = fit(typed, run_dir, OmegaConf.to_container(cfg, resolve=True))
    except Exception as e:  # every failure is one line; a bug's traceback goes to the log only
        if isinstance(e, (ConfigError, WriteError)):
            msg = str(e)
        else:
            msg = f"{type(e).__name__}: {e}"
            if not isinstance(e, OSError):
                log.exception("run failed")
        print(f"hfrnn train: error: {msg}", file=sys.stderr)
        if multirun or (fresh and not isinstance(e, ConfigError)):
            _write_error_result(hydra_dir, cfg, msg)  # the job's record (never over a run's files)
        elif isinstance(e, ConfigError):
            _discard_unused_run_dir(hydra_dir)
        if multirun:
            _JOBS.append((hydra_dir, msg))
            return None
        sys.exit(2 if isinstance(e, ConfigError) else 1)
    note = f"  ({result['note']})" if result.get("note") else ""
    print(f"{result['status']}: {result['task']} T={result['T']} {result['optimizer']} seed={result['seed']} "
          f"minibatches={result['minibatches']:.0f} wall={result['wall_s']:.0f}s "
          f"test_error_rate={result.get('test_error_rate', 'n/a')}  ->  {run_dir / 'result.json'}{note}")
    failed = result["status"] == "error"
    if failed:
        print(f"hfrnn train: error: {result['message']}  ->  {run_dir / 'result.json'}", file=sys.stderr)
    if multirun:
        _JOBS.append((run_dir, result["message"] if failed else None))
    if result["status"] == "interrupted":
        if multirun and sweep_stop.in_worker():
            sweep_stop.request()  # the other jobs stop too; the parent exits 130 (an exit here would kill them)
            return float(result["minibatches"])
        sys.exit(130)  # a signal stops a sweep too
    if failed:
        if multirun:
            return None
        sys.exit(1)
    return float(result["minibatches"])


# The number of jobs of the sweep being launched (set by main for the jobs, which may run in other
# processes: environment variables reach the joblib launcher's workers and SLURM's tasks).
SWEEP_JOBS_ENV = "HFRNN_SWEEP_JOBS"


def _job_label(hydra_cfg) -> None:
    """Start every progress line of this sweep job with ``job i/n``."""
    from .train.progress import set_job_label

    n = os.environ.get(SWEEP_JOBS_ENV)
    set_job_label(f"job {hydra_cfg.job.num + 1}/{n}" if n else f"job {hydra_cfg.job.num + 1}")


def _write_error_result(job_dir: Path, cfg: DictConfig, message: str) -> None:
    """``result.json`` with ``status: error`` for a job that failed before (or without) its own.

    Never in a directory that holds a run's files; best effort (the disk may be the problem).
    """
    from . import __version__
    from .train.records import holds_run, write_json_atomic

    try:
        if not job_dir.is_dir() or holds_run(job_dir):
            return
        try:
            config = OmegaConf.to_container(cfg, resolve=True)
        except Exception:  # a value that does not resolve: keep the overrides as written
            config = OmegaConf.to_container(cfg, resolve=False)
        pick = {k: OmegaConf.select(cfg, k, default=None, throw_on_resolution_failure=False)
                for k in ("task.name", "T", "model.name", "optimizer.name", "seed")}
        write_json_atomic(job_dir / "result.json", {
            "task": pick["task.name"], "T": pick["T"], "model": pick["model.name"],
            "optimizer": pick["optimizer.name"], "seed": pick["seed"], "status": "error", "success": False,
            "message": message, "iterations": 0, "minibatches": 0.0, "forward_evals": 0.0, "wall_s": 0.0,
            "hfrnn_version": __version__, "config": config})
    except Exception as e:  # nothing more can be recorded
        log.warning("cannot write %s: %s", job_dir / "result.json", e)


def _discard_unused_run_dir(run_dir: Path) -> None:
    """Remove the directory Hydra made for a run that was refused before it started.

    Only when it holds nothing but Hydra's own files (``.hydra/`` and the job's log), so that a
    directory with anything of a run's in it is never touched.
    """
    try:
        entries = list(run_dir.iterdir())
        if all(e.name == ".hydra" or (e.is_file() and e.suffix == ".log") for e in entries):
            shutil.rmtree(run_dir)
    except OSError:
        pass  # best effort: a leftover empty directory is harmless


def _override(args: list[str], key: str) -> str | None:
    """The value of ``key=...`` (or ``+key=``/``++key=``) among command-line overrides."""
    value = None
    for a in args:
        name, sep, v = a.lstrip("+").partition("=")
        if sep and name == key:
            value = v.strip().strip("'\"")
    return value


def _refuse_existing_run_dir(args: list[str]) -> str | None:
    """A fresh single run given ``hydra.run.dir=<a run's directory>``: the one-line refusal.

    Checked before Hydra starts, because Hydra writes ``.hydra/`` and its log into the directory
    first (:func:`hfrnn.train.loop.fit` refuses such a directory too, atomically).
    """
    if "-m" in args or "--multirun" in args or _override(args, "resume") not in (None, "", "null"):
        return None
    run_dir = _override(args, "hydra.run.dir")
    if not run_dir or "${" in run_dir:
        return None
    from .train.records import holds_run

    held = holds_run(Path(run_dir))
    if held is None:
        return None
    return (f"{run_dir} already holds a run ({held} exists): give a new hydra.run.dir, "
            f"or continue that run with resume={run_dir}")


def _sweep_outcomes(started: float) -> tuple[int, list[tuple[Path, str]], list[Path]]:
    """The jobs of the multirun that just ended, those that failed (with their messages) and those
    that ended ``interrupted``.

    Jobs run in this process are known directly; jobs a launcher ran elsewhere are found by the
    ``result.json`` files written in the sweep directory since ``started``.
    """
    import json

    jobs: dict[Path, str | None] = {d.resolve(): msg for d, msg in _JOBS}
    status: dict[Path, str | None] = {}
    try:
        sweep = Path(HydraConfig.get().sweep.dir) if HydraConfig.initialized() else None
    except Exception:
        sweep = None
    if sweep is not None and sweep.is_dir():
        for res in sweep.glob("*/result.json"):
            try:
                if res.stat().st_mtime < started:
                    continue
                r = json.loads(res.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(r, dict):
                d = res.parent.resolve()
                status[d] = r.get("status")
                if d not in jobs:
                    jobs[d] = (r.get("message") or "error") if r.get("status") == "error" else None
    failed = [(d, m) for d, m in jobs.items() if m is not None]
    interrupted = [d for d in jobs if status.get(d) == "interrupted"]
    return len(jobs), failed, interrupted


# Hydra's flags that take a value (the next word), and those after which hfrnn checks nothing itself.
_VALUE_FLAGS = {"--cfg", "-c", "--package", "-p", "--experimental-rerun"}
_INFO_TOPICS = {"all", "config", "defaults", "defaults-tree", "plugins", "searchpath"}
_HYDRA_OWN = {"--hydra-help", "--shell-completion", "-sc", "--config-path", "-cp", "--config-name", "-cn",
              "--config-dir", "-cd", "--experimental-rerun", "--version"}


def _overrides(args: list[str]) -> list[str] | None:
    """The overrides among ``hfrnn train``'s words; None when Hydra is asked for something of its
    own (another config, its help, shell completion), which hfrnn then leaves to Hydra."""
    out, skip = [], False
    for i, a in enumerate(args):
        if skip:
            skip = False
            continue
        flag = a.split("=", 1)[0]
        if flag in _HYDRA_OWN:
            return None
        if a.startswith("-"):
            skip = ("=" not in a and flag in _VALUE_FLAGS
                    or flag in ("--info", "-i") and i + 1 < len(args) and args[i + 1] in _INFO_TOPICS)
            continue
        out.append(a)
    return out


def train_help() -> str:
    """``hfrnn train --help``: the groups with their options and the main keys, in words."""
    def opts(group: str) -> str:
        return ", ".join(c for c in group_choices(CONFIG_DIR, group) if "/" not in c)

    return f"""usage: hfrnn train [-m] [KEY=VALUE ...] [--cfg job]

One training run, or with -m a sweep over comma-separated values (task=addition,xor seed=0,1,2).
Each run writes metrics.jsonl, result.json and checkpoint.pt into its own directory under outputs/.
Running a sweep again continues it: finished runs are skipped, unfinished ones resume.

Groups (one option each):
  task=           {opts("task")}
  model=          {opts("model")}
  optimizer=      {opts("optimizer")}  (hf_nosd: without structural damping)
  arm=            model and optimizer of a Table 1 row: {opts("arm")}
  experiment=     presets: {opts("experiment")}
  hydra/launcher= {opts("hydra/launcher")}  ({LAUNCHER_HINT})

Main keys:
  T=30                          sequence length (the pathological tasks)
  seed=0                        the run's seed (data, initialisation, minibatches)
  hidden=100                    hidden units of the RNN
  device=cpu | cuda | auto      dtype=float32 | float64     threads=1 (torch threads)
  budget.max_minibatches=50000  stop after this many minibatches (the paper's unit of cost)
  budget.session_wall_s=SECS    at most this much wall clock per invocation (run again: continues)
  logger=none | tensorboard | csv | [tensorboard,csv]    scalar loggers beside metrics.jsonl
  optimizer.damping.initial=0.1, optimizer.structural.mu=0.03, optimizer.cg.max_iters=300, ...
  resume=DIR                    continue an interrupted run in its own directory
  hydra.run.dir=DIR             where a single run writes

hfrnn train --cfg job [KEY=VALUE ...] prints every key with its value, without running;
README.md ("Configuration") says what each key does. Hydra's own flags: --hydra-help."""


def _unknown_command(cmd: str) -> str:
    return f"hfrnn: unknown command {cmd!r}" + (
        f"; did you mean {m[0]!r}?" if (m := difflib.get_close_matches(cmd, COMMANDS, n=1)) else ";") + \
        f" try: {', '.join(COMMANDS)}"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(__doc__.strip())
        return 0
    if argv[0] in ("--version", "-V", "version"):
        from . import __version__
        print(f"hfrnn {__version__}")
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd == "train":
        if "-h" in rest or "--help" in rest:
            print(train_help())
            return 0
        overrides = _overrides(rest)
        if overrides is not None:
            try:
                check_overrides(CONFIG_DIR, overrides)
            except ConfigError as e:
                print(f"hfrnn train: error: {e}", file=sys.stderr)
                return 2
        refusal = _refuse_existing_run_dir(rest)
        if refusal:
            print(f"hfrnn train: error: {refusal}", file=sys.stderr)
            return 2
        if overrides is not None and ("-m" in rest or "--multirun" in rest):
            n = sweep_size(CONFIG_DIR, overrides)
            if n is None:
                os.environ.pop(SWEEP_JOBS_ENV, None)
            else:
                os.environ[SWEEP_JOBS_ENV] = str(n)
        sys.argv = [f"hfrnn {cmd}", *rest]
        _JOBS.clear()
        started = time.time() - 1.0  # file times can lag the clock a little
        if "-m" not in rest and "--multirun" not in rest:
            train_app()
            return 0
        from .train.sweep_stop import SweepParent

        with SweepParent() as parent:  # a signal lets the running jobs write their files (sweep_stop)
            train_app()
        n, failed, interrupted = _sweep_outcomes(started)
        if failed:
            print(f"hfrnn train: error: {len(failed)} of {n} jobs failed:", file=sys.stderr)
            for d, msg in failed:
                print(f"  {d}: {msg}", file=sys.stderr)
        if parent.stopped or interrupted:  # also a job stopped by its own signal (a scheduler's SIGTERM)
            what = f"{len(interrupted)} of {n} jobs were interrupted" if interrupted else "the sweep was stopped"
            print(f"hfrnn train: {what}; the same command continues it", file=sys.stderr)
            return 130
        return 1 if failed else 0
    if cmd == "data":
        from .data_cli import main as data_main
        return int(data_main(rest) or 0)
    if cmd == "report":
        from .report.cli import main as report_main
        return int(report_main(rest) or 0)
    print(_unknown_command(cmd), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
