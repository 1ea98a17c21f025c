"""The report's one-line diagnosis of a run that did not solve (hfrnn.report.trend)."""
from hfrnn.report.trend import diagnose


def _recs(errors, hf=True):
    out = []
    for i, e in enumerate(errors):
        r = {"iteration": i + 1, "minibatches": 100.0 * (i + 1), "test_error_rate": e}
        if hf:
            r.update({"lambda": 0.1 / (i + 1), "rho": 0.5 + 0.01 * i, "cg_iters": 10 + i})
        out.append(r)
    return out


def test_descending_when_the_last_half_falls():
    text = diagnose(_recs([0.9, 0.9, 0.88, 0.87, 0.8, 0.6, 0.4, 0.3]))
    assert "descending" in text and "of its 800 minibatches" in text and "best 0.3" in text
    assert "last 8 HF iterations: lambda 0.0125, median rho 0.54, median CG 14" in text


def test_plateau_when_it_does_not():
    text = diagnose(_recs([0.9, 0.5, 0.5, 0.49, 0.5, 0.49, 0.49, 0.48], hf=False))
    assert text.endswith("plateau")  # a fall of 2% over the last half; no HF fields: nothing about lambda


def test_non_finite_and_missing_values_are_skipped():
    recs = _recs([0.9, "nan", 0.5, 0.2]) + [{"iteration": 9, "minibatches": 900.0}]
    assert "0.9 -> 0.9 -> 0.2 (at 0, 50, 100% of its 400 minibatches" in diagnose(recs)  # nan at 200: the value before
    assert diagnose(_recs([0.9, 0.8])) == "too few test evaluations to say (2)"
