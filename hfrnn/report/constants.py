"""The report's fixed names, orders and styles, defined once (every other report module imports them).

The report never imports the training code (no torch, no Hydra), so the few facts it shares with
the core are repeated here, each once: the natural tasks and their default data files
(``hfrnn.tasks.natural.NATURAL_TASKS`` / ``DEFAULT_PATHS``).
"""
from __future__ import annotations

# The paper's problems in the paper's order; other tasks follow alphabetically.
TASK_ORDER = ("addition", "multiplication", "temporal_order", "temporal_order_3bit", "random_permutation",
              "xor", "memorization", "memorization_20bit")
# No success rule: not part of Figure 3, but of Table 1 (hfrnn.tasks.natural.NATURAL_TASKS).
NATURAL_TASKS = ("bouncing_balls", "midi", "speech")
# hfrnn.tasks.natural.DEFAULT_PATHS: the data file a run without ``data.path`` used.
DEFAULT_DATA = {"bouncing_balls": "data/bouncing_balls.h5", "midi": "data/nottingham.h5", "speech": "data/fsdd.h5"}

# The paper's colours: red for HF with Tikhonov damping only, blue for HF with structural damping.
OPTIMIZER_COLORS = {"hf": "tab:blue", "hf_nosd": "tab:red"}
OTHER_COLORS = ("tab:green", "tab:purple", "tab:orange", "tab:brown", "tab:gray", "tab:olive", "tab:cyan")
OPTIMIZER_NAMES = {"hf": "HF, structural damping (hf)", "hf_nosd": "HF, Tikhonov damping only (hf_nosd)"}
# Models are told apart by marker, line style and bar hatch (colour stays the optimizer's).
MODEL_STYLES = {"rnn": ("o", "-", ""), "lstm": ("s", "--", "//")}
OTHER_MODEL_STYLES = (("^", "-.", ".."), ("D", ":", "xx"), ("v", (0, (5, 1)), "\\\\"))


def task_sort_key(task: str) -> tuple[int, str]:
    return (TASK_ORDER.index(task), "") if task in TASK_ORDER else (len(TASK_ORDER), task)


def optimizer_sort_key(opt: str) -> tuple[int, str]:
    return ({"hf_nosd": 0, "hf": 1}.get(opt, 2), opt)


def model_sort_key(model: str) -> tuple[int, str]:
    return ({"rnn": 0, "lstm": 1}.get(model, 2), model)


def color_of(opt: str, others: list[str]) -> str:
    """Red for hf_nosd, blue for hf (the paper's colours), then a fixed cycle over ``others``."""
    if opt in OPTIMIZER_COLORS:
        return OPTIMIZER_COLORS[opt]
    return OTHER_COLORS[others.index(opt) % len(OTHER_COLORS)] if opt in others else "black"


def model_style(model: str, models: list[str]) -> tuple[str, object, str]:
    """``(marker, linestyle, hatch)`` of a model: rnn plain circles, lstm dashed squares, then a cycle."""
    if model in MODEL_STYLES:
        return MODEL_STYLES[model]
    others = [m for m in models if m not in MODEL_STYLES]
    return OTHER_MODEL_STYLES[others.index(model) % len(OTHER_MODEL_STYLES)] if model in others else ("o", "-", "")


def series_label(model: str, optimizer: str, show_model: bool, long: bool = False) -> str:
    """A legend entry: the optimizer (its long name in Figure 3), with the model where several are shown."""
    name = OPTIMIZER_NAMES.get(optimizer, optimizer) if long else optimizer
    return f"{model.upper() if model in MODEL_STYLES else model} + {name}" if show_model else name
