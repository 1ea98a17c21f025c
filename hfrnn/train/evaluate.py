"""Test-set evaluation: loss, the wrong-sequence rate and the task's own measures."""
from __future__ import annotations

import torch
from torch import Tensor

from .. import losses
from ..curvature.protocol import sequence_count, steps_per_sequence
from ..tasks.base import Batch, Task


def evaluate(outputs_fn, theta: Tensor, task: Task, test: Batch, chunk: int) -> dict[str, float]:
    """Forward the test set in chunks.

    Args:
        outputs_fn: ``(theta, x [T, B, n]) -> s [T, B, K]``.
    Returns:
        ``test_loss`` (the paper's objective: summed over scored steps, mean over sequences),
        ``test_loss_per_step`` (the same divided by the mean scored steps per sequence, a display
        unit comparable across T), ``test_error_rate`` (fraction of wrong sequences,
        pathological tasks) and any ``extra_metrics`` of the task (averaged over chunks by size).
    """
    norm = sequence_count(test)
    loss_sum, n_wrong, chunks = 0.0, 0, []
    with torch.no_grad():
        for part in test.split(chunk):
            s = outputs_fn(theta, part.inputs)
            loss_sum += float(losses.loss(task.loss, s, part.targets, part.mask, norm))
            n_wrong += int(task.wrong(s, part).sum())
            chunks.append(task.extra_metrics(s, part))
    extras = combine_chunks(chunks)
    out = {"test_loss": loss_sum, "test_loss_per_step": loss_sum / steps_per_sequence(test)}
    if task.has_success_rule:
        out["test_error_rate"] = n_wrong / test.size
    out.update({f"test_{k}": v for k, v in extras.items()})
    return out


def combine_chunks(chunks: list[dict[str, float]]) -> dict[str, float]:
    """Merge per-chunk measures: counts and ``*_sum`` add up; ``X_per_frame``, ``X_per_step`` and
    ``X_per_sequence`` are recomputed from ``X_sum`` and the ``frames`` / ``sequences`` counts."""
    if not chunks:
        return {}
    additive = {k for k in chunks[0] if k.endswith("_sum") or k in ("frames", "sequences")}
    out = {k: sum(c[k] for c in chunks) for k in additive}
    for k in chunks[0]:
        if k in additive:
            continue
        base, _, unit = k.rpartition("_per_")
        count = {"frame": "frames", "step": "frames", "sequence": "sequences"}.get(unit)
        if base and f"{base}_sum" in out and count in out and out[count]:
            out[k] = out[f"{base}_sum"] / out[count]
        else:  # anything else: the mean over chunks
            out[k] = sum(c[k] for c in chunks) / len(chunks)
    return out
