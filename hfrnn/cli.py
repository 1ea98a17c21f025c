"""The ``hfrnn`` console entry point: the first word picks a Hydra app.

    hfrnn train [overrides...]   # one run, or a sweep with -m
    hfrnn data KIND [overrides]  # build data/<name>.h5 from raw sources
    hfrnn report DIR             # tables and plots from a sweep's files

Everything after the word is Hydra's (overrides, ``-m``, ``--cfg job``, ``--help``).
"""
from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from .config import ConfigError, register, validate

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "configs")
COMMANDS = ("train", "data", "report")
log = logging.getLogger("hfrnn")

register()


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def train_app(cfg: DictConfig) -> float | None:
    """Hydra task function of ``hfrnn train``; returns the minibatches used (for sweepers)."""
    from .parallel.launch import fit_distributed, wants_distributed
    from .train.loop import fit

    hydra_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        typed = OmegaConf.to_object(cfg)
        try:
            validate(typed)
        except ConfigError:
            _discard_unused_run_dir(hydra_dir)
            raise
        # A resumed run continues in its own directory, not in the new one Hydra made.
        run_dir = Path(typed.resume) if typed.resume else hydra_dir
        if wants_distributed(typed):  # dist.procs > 1, or started by torchrun
            result = fit_distributed(typed, run_dir, OmegaConf.to_container(cfg, resolve=True))
            if result is None:  # a torchrun rank other than 0: rank 0 reports
                return None
        else:
            result = fit(typed, run_dir, OmegaConf.to_container(cfg, resolve=True))
    except ConfigError as e:
        print(f"hfrnn train: error: {e}", file=sys.stderr)
        sys.exit(2)
    print(f"{result['status']}: {result['task']} T={result['T']} {result['optimizer']} seed={result['seed']} "
          f"minibatches={result['minibatches']:.0f} wall={result['wall_s']:.0f}s "
          f"test_error_rate={result.get('test_error_rate', 'n/a')}  ->  {run_dir / 'result.json'}")
    if result["status"] in ("error", "interrupted"):
        sys.exit(1 if result["status"] == "error" else 130)
    return float(result["minibatches"])


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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(__doc__.strip())
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd == "train":
        sys.argv = [f"hfrnn {cmd}", *rest]
        train_app()
        return 0
    if cmd == "data":
        try:
            from .data_cli import main as data_main
        except ImportError:
            print("hfrnn data: not available in this build", file=sys.stderr)
            return 2
        return int(data_main(rest) or 0)
    if cmd == "report":
        try:
            from .report.cli import main as report_main
        except ImportError:
            print("hfrnn report: not available yet in this version", file=sys.stderr)
            return 2
        return int(report_main(rest) or 0)
    print(f"hfrnn: unknown command {cmd!r}, try: {', '.join(COMMANDS)}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
