"""The progress line: budget share and ETA, 3 significant digits, the task's own measure, the job label."""
import logging
import re
from types import SimpleNamespace

import pytest

from hfrnn.train import progress
from hfrnn.train.schema import BudgetConfig

from .test_loggers import BASE, TINY, _fit

HF_REC = {"train_loss": 3.2109876, "lambda": 0.012345678, "rho": 0.9339242763701732, "cg_iters": 40}


@pytest.fixture(autouse=True)
def _no_label():
    progress.set_job_label(None)
    yield
    progress.set_job_label(None)


def _counters(iteration=12, minibatches=240.0, wall_s=12.0):
    return {"iteration": iteration, "minibatches": minibatches, "wall_s": wall_s}


def test_hf_line_three_significant_digits_budget_share_and_eta():
    text = progress.line(HF_REC, _counters(), BudgetConfig(), {"test_error_rate": 0.52345})
    assert text == ("it 12  mb 240/50000 (0.48%)  elapsed 0:00:12  ETA 0:41:28  loss/seq 3.211  "
                    "test_err 0.523  lambda 0.0123  rho 0.934  cg 40")
    assert "\r" not in text


def test_the_binding_budget_carries_the_share_and_sets_the_eta():
    wall = BudgetConfig(max_wall_s=60.0)  # 20% of the wall clock spent, 0.48% of the minibatches
    text = progress.line(HF_REC, _counters(), wall, {})
    assert "mb 240  elapsed 0:00:12/0:01:00 (20%)  ETA 0:00:48" in text
    its = BudgetConfig(max_iterations=24)
    assert progress.line(HF_REC, _counters(), its, {}).startswith("it 12/24 (50%)  mb 240  elapsed 0:00:12  ETA 0:00:12")


def test_no_finite_budget_no_eta_guess():
    text = progress.line(HF_REC, _counters(), BudgetConfig(max_minibatches=float("inf")), {})
    assert "ETA ?" in text and "/" not in text.split("  loss/seq")[0]


def test_natural_tasks_show_their_own_measure_never_nan():
    first_order = {"train_loss": 1.5, "grad_norm": 0.123456}
    text = progress.line(first_order, _counters(), BudgetConfig(), {"test_loss": 2.0, "test_sq_err_per_frame": 0.0456789})
    assert "test_sqerr/frame 0.0457" in text and "|g| 0.123" in text
    text = progress.line(first_order, _counters(), BudgetConfig(), {"test_log_lik_per_step": -3.14159})
    assert "test_loglik/step -3.14" in text
    before_any_evaluation = progress.line(first_order, _counters(), BudgetConfig(), {})
    assert "nan" not in before_any_evaluation and "test_" not in before_any_evaluation


def test_label_prefixes_every_line():
    progress.set_job_label("job 3/32")
    assert progress.line(HF_REC, _counters(), BudgetConfig(), {}).startswith("job 3/32  it 12  ")
    progress.set_job_label(None)
    assert progress.line(HF_REC, _counters(), BudgetConfig(), {}).startswith("it 12  ")


def test_helpers():
    assert progress.duration(3725.4) == "1:02:05" and progress.duration(None) == "?"
    assert progress.g3(0.9339242763701732) == "0.934" and progress.g3(None) == "n/a"
    assert progress.resolve_log_every(None, second_order=True) == 1
    assert progress.resolve_log_every(None, second_order=False) == 100
    assert progress.resolve_log_every(7, second_order=False) == 7
    share = progress.binding_budget(_counters(), SimpleNamespace(max_iterations=None, max_minibatches=480.0,
                                                                 max_wall_s=None))
    assert (share.counter, share.fraction) == ("minibatches", 0.5)
    assert progress.eta_s(_counters(), share) == pytest.approx(12.0)


# budget.max_iterations=3 binds first: the iterations carry the share.
LINE = re.compile(r"^job 1/2  it (\d+)/3 \(\d+%\)  mb [\d.]+  elapsed \d+:\d\d:\d\d  ETA \d+:\d\d:\d\d  "
                  r"loss/seq \S+  test_err \S+  lambda \S+  rho \S+  cg \d+$")


def test_a_tiny_hf_run_logs_a_labelled_line_per_iteration(tmp_path, caplog):
    progress.set_job_label("job 1/2")
    with caplog.at_level(logging.INFO, logger="hfrnn.train.loop"):
        _fit(TINY + ["budget.max_iterations=3"], tmp_path)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("job 1/2")]
    assert [int(LINE.match(ln).group(1)) for ln in lines] == [1, 2, 3], lines


def test_first_order_lines_every_log_every_steps(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="hfrnn.train.loop"):
        _fit(BASE + ["optimizer=sgd", "log_every=3", "eval.every_minibatches=100", "budget.max_iterations=7"],
             tmp_path)
    its = [int(m.group(1)) for r in caplog.records if (m := re.match(r"it (\d+)/7 ", r.getMessage()))]
    assert its == [1, 3, 6, 7]  # the evaluation at step 1, every 3rd step, the last step
