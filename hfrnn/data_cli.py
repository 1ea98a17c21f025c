"""``hfrnn data <kind> [key=value ...]``: build one HDF5 dataset file from raw sources.

::

    hfrnn data bouncing_balls                                  # -> data/bouncing_balls.h5
    hfrnn data midi source=../shared/data/midi/nottingham      # -> data/nottingham.h5
    hfrnn data midi source=../shared/data/midi/jsb_chorales/jsb-chorales-quarter.json
    hfrnn data speech source=../shared/data/speech/fsdd        # -> data/fsdd.h5
    hfrnn data midi source=... out=data/n88.h5 pitches=88 overwrite=true

The overrides are composed by Hydra's compose API against the dataclass schema of the kind
(:mod:`hfrnn.datasets.config`, registered in the ConfigStore as ``data_<kind>``), so a misspelt
key or a wrong type fails with Hydra's message before any work. Exit status: 0 built, 1 a data
problem (:class:`~hfrnn.datasets.errors.DataError`: missing source, corrupt file, existing output
without ``overwrite=true``), 2 a usage error.
"""
from __future__ import annotations

import dataclasses
import difflib
import logging
import sys
import time
from pathlib import Path
from typing import Any, Callable

from hydra import compose, initialize
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from omegaconf import OmegaConf

from hfrnn.datasets import bouncing_balls, midi, speech
from hfrnn.datasets.config import CONFIGS
from hfrnn.datasets.errors import DataError
from hfrnn.datasets.h5io import SequenceSet, check_writable, write_sequence_set

log = logging.getLogger("hfrnn.data")

BUILDERS: dict[str, Callable[[Any], SequenceSet]] = {
    "bouncing_balls": bouncing_balls.build, "midi": midi.build, "speech": speech.build}
USAGE = "usage: hfrnn data {bouncing_balls|midi|speech} [key=value ...]"


def _register() -> None:
    cs = ConfigStore.instance()
    for kind, schema in CONFIGS.items():
        cs.store(name=f"data_{kind}", node=schema)


def compose_config(kind: str, overrides: list[str]) -> Any:
    """The kind's dataclass with ``overrides`` applied (raises HydraException on bad ones)."""
    _register()
    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    with initialize(version_base=None, config_path=None):
        cfg = compose(config_name=f"data_{kind}", overrides=overrides)
    known = {f.name for f in dataclasses.fields(CONFIGS[kind])}
    extra = sorted(set(cfg.keys()) - known)
    if extra:  # `+key=value` appends even to a structured config; refuse it here
        raise HydraException(f"unknown key(s) {extra} for `hfrnn data {kind}`; valid: {sorted(known)}")
    return OmegaConf.to_object(cfg)


def output_path(kind: str, cfg: Any) -> Path:
    """``out`` or ``data/<name>.h5`` with the name derived from the source."""
    if cfg.out:
        return Path(cfg.out)
    if kind == "bouncing_balls":
        name = "bouncing_balls"
    elif cfg.source is None:
        raise DataError(f"`hfrnn data {kind}` needs source=<path>")
    else:
        name = (midi.dataset_name if kind == "midi" else speech.dataset_name)(Path(cfg.source))
    return Path("data") / f"{name}.h5"


def _validate(kind: str, cfg: Any) -> None:
    try:
        {"bouncing_balls": bouncing_balls.validate, "midi": midi.validate,
         "speech": speech.validate}[kind](cfg)
    except ValueError as e:
        raise DataError(str(e)) from e
    if kind != "bouncing_balls" and not Path(cfg.source).exists():
        raise DataError(f"source {cfg.source} does not exist")


def main(argv: list[str]) -> int:
    """Entry point; ``argv`` is everything after ``hfrnn data``. Returns the exit status."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, file=sys.stderr if not argv else sys.stdout)
        for kind, schema in CONFIGS.items():
            fields = ", ".join(f"{f.name}" for f in dataclasses.fields(schema))
            print(f"  {kind}: {fields}", file=sys.stderr if not argv else sys.stdout)
        return 2 if not argv else 0
    kind, overrides = argv[0], argv[1:]
    if kind not in BUILDERS:
        close = difflib.get_close_matches(kind, list(BUILDERS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ";"
        print(f"hfrnn data: unknown dataset {kind!r}{hint} valid: {', '.join(BUILDERS)}", file=sys.stderr)
        return 2
    try:
        cfg = compose_config(kind, overrides)
    except HydraException as e:
        cause = f" ({e.__cause__})" if e.__cause__ else ""
        print(f"hfrnn data {kind}: {e}{cause}", file=sys.stderr)
        return 2
    try:
        out = output_path(kind, cfg)
        _validate(kind, cfg)
        check_writable(out, cfg.overwrite)
        t0 = time.perf_counter()
        ds = BUILDERS[kind](cfg)
        write_sequence_set(out, ds, overwrite=cfg.overwrite)
    except DataError as e:
        print(f"hfrnn data {kind}: error: {e}", file=sys.stderr)
        return 1
    sizes = ", ".join(f"{s} {len(v)} seq / {len(v.data)} frames" for s, v in ds.splits.items())
    log.info("built %s in %.1f s: %s (dim %d)", out, time.perf_counter() - t0, sizes, ds.dim)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
