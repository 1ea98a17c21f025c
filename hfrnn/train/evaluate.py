"""Test-set evaluation: loss, the wrong-sequence rate and the task's own measures."""
from __future__ import annotations

import torch
from torch import Tensor

from .. import losses
from ..curvature.protocol import scored_count
from ..tasks.base import Batch, Task


def evaluate(outputs_fn, theta: Tensor, task: Task, test: Batch, chunk: int) -> dict[str, float]:
    """Forward the test set in chunks.

    Args:
        outputs_fn: ``(theta, x [T, B, n]) -> s [T, B, K]``.
    Returns:
        ``test_loss`` (mean over scored steps), ``test_error_rate`` (fraction of wrong sequences,
        pathological tasks) and any ``extra_metrics`` of the task (averaged over chunks by size).
    """
    norm = scored_count(test)
    loss_sum, n_wrong, extras = 0.0, 0, {}
    with torch.no_grad():
        for part in test.split(chunk):
            s = outputs_fn(theta, part.inputs)
            loss_sum += float(losses.loss(task.loss, s, part.targets, part.mask, norm))
            n_wrong += int(task.wrong(s, part).sum())
            for k, v in task.extra_metrics(s, part).items():
                extras[k] = extras.get(k, 0.0) + v * part.size / test.size
    out = {"test_loss": loss_sum}
    if task.has_success_rule:
        out["test_error_rate"] = n_wrong / test.size
    out.update({f"test_{k}": v for k, v in extras.items()})
    return out
