"""`ltbench claims` on constructed runs: each claim holding, failing and inconclusive, the spread rule,
contexts that must not be mixed, undefined metrics, and the command's output, claims.md and exit status."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from harness.cli import main
from harness.reports.claims import (
    CLAIMS,
    FAILS,
    HOLDS,
    INCONCLUSIVE,
    Comparison,
    check_claims,
    check_comparison,
    render,
)
from tests.reports.run_records import run_record, synthetic_runs

LA_BEATS_CE = Comparison("la", "ce", "test_mean_class_acc")


def seeds(method: str, values: list[float], **fields) -> list[dict]:
    return [run_record(method, s, acc=v, **fields) for s, v in enumerate(values)]


def verdicts(runs: pd.DataFrame) -> dict[str, str]:
    return {r.claim.key: r.verdict for r in check_claims(runs)}


def test_holds_when_welchs_test_rejects_equal_means() -> None:
    runs = synthetic_runs(seeds("la", [0.60, 0.62, 0.64]) + seeds("ce", [0.50, 0.52, 0.54]))
    result = check_comparison(LA_BEATS_CE, runs)
    assert result.verdict == HOLDS
    (context,) = result.contexts
    # Δ = 10 points, t = 10 / sqrt(4/3 + 4/3) = 6.12 on 4 degrees of freedom: p = 0.0036
    assert "Δ +10.00, Welch p = 0.0036 < 0.05" in context.line and "(n=3)" in context.line


def test_a_gap_within_the_noise_is_inconclusive_not_a_failure() -> None:
    noisy = synthetic_runs(seeds("la", [0.50, 0.60, 0.55]) + seeds("ce", [0.50, 0.56, 0.53]))  # Δ +2, p = 0.59
    result = check_comparison(LA_BEATS_CE, noisy)
    assert result.verdict == INCONCLUSIVE and "Δ +2.00, Welch p = 0.591 >= 0.05" in result.contexts[0].line
    # a negative gap inside the noise is not evidence against the claim either
    slightly_worse = synthetic_runs(seeds("la", [0.50, 0.56, 0.53]) + seeds("ce", [0.50, 0.60, 0.55]))
    assert check_comparison(LA_BEATS_CE, slightly_worse).verdict == INCONCLUSIVE


def test_fails_only_when_the_opposite_is_significant() -> None:
    reversed_ = synthetic_runs(seeds("la", [0.40, 0.41, 0.42]) + seeds("ce", [0.50, 0.51, 0.52]))
    result = check_comparison(LA_BEATS_CE, reversed_)
    assert result.verdict == FAILS and "Δ -10.00, Welch p = 0.000255 < 0.05" in result.contexts[0].line


def test_two_seeds_give_no_verdict_three_do() -> None:
    """Two seeds 0.01 apart have a tiny std that would make any gap look certain: no verdict below 3 seeds."""
    two = synthetic_runs(seeds("la", [0.9, 0.91]) + seeds("ce", [0.10, 0.11]))
    result = check_comparison(LA_BEATS_CE, two)
    assert result.verdict == INCONCLUSIVE and "too few seeds (needs >= 3 each)" in result.contexts[0].line
    three = synthetic_runs(seeds("la", [0.9, 0.91, 0.92]) + seeds("ce", [0.10, 0.11, 0.12]))
    assert check_comparison(LA_BEATS_CE, three).verdict == HOLDS
    one_seed = synthetic_runs(seeds("la", [0.9]) + seeds("ce", [0.1, 0.12, 0.11]))
    assert check_comparison(LA_BEATS_CE, one_seed).verdict == INCONCLUSIVE
    assert check_comparison(LA_BEATS_CE, synthetic_runs([])).verdict == INCONCLUSIVE
    failed = synthetic_runs(seeds("ce", [0.5, 0.5, 0.5]) + [run_record("la", s, status="FAILED") for s in (0, 1, 2)])
    assert check_comparison(LA_BEATS_CE, failed).verdict == INCONCLUSIVE  # failed runs are not results


def test_each_context_names_its_recipe_and_whether_it_is_the_papers() -> None:
    """A verdict from a 12-epoch recipe says nothing about the paper's 200-epoch setting, and says so."""
    short = seeds("la", [0.60, 0.62, 0.64], recipe="quick", epochs=12) + seeds(
        "ce", [0.50, 0.52, 0.54], recipe="quick", epochs=12
    )
    (result,) = [r for r in check_claims(synthetic_runs(short)) if r.claim.key == "la-beats-ce"]
    (context,) = result.comparisons[0].contexts
    assert context.label == "cifar10-lt r=100 resnet32, recipe quick, 12 epochs"
    assert context.line.endswith("(a short recipe: not evidence about the paper's setting)")
    text = render(check_claims(synthetic_runs(short)))
    assert "[holds] LA loss (la) beats ERM (ce) on mean per-class accuracy (Menon et al. 2021) (only recipes " in text
    papers = seeds("la", [0.60, 0.62, 0.64], recipe="menon2021-cifar") + seeds(
        "ce", [0.50, 0.52, 0.54], recipe="menon2021-cifar"
    )
    (result,) = [r for r in check_claims(synthetic_runs(papers)) if r.claim.key == "la-beats-ce"]
    assert "not evidence" not in result.comparisons[0].contexts[0].line
    other = seeds("la", [0.6, 0.62, 0.64], recipe="lort-stage1") + seeds("ce", [0.5, 0.52, 0.54], recipe="lort-stage1")
    (result,) = [r for r in check_claims(synthetic_runs(other)) if r.claim.key == "la-beats-ce"]
    assert (
        result.comparisons[0]
        .contexts[0]
        .line.endswith("(not the paper's recipe: not evidence about the paper's setting)")
    )


def test_methods_trained_differently_are_never_compared() -> None:
    runs = synthetic_runs(
        seeds("la", [0.9, 0.91, 0.92], recipe="long") + seeds("ce", [0.1, 0.11, 0.12], recipe="short")
    )
    result = check_comparison(LA_BEATS_CE, runs)
    assert result.verdict == INCONCLUSIVE and result.contexts == []


def test_one_failing_context_fails_the_comparison() -> None:
    runs = synthetic_runs(
        seeds("la", [0.60, 0.61, 0.62]) + seeds("ce", [0.50, 0.51, 0.52])
        + seeds("la", [0.50, 0.51, 0.52], ratio=10.0) + seeds("ce", [0.60, 0.61, 0.62], ratio=10.0)
    )  # fmt: skip
    result = check_comparison(LA_BEATS_CE, runs)
    assert result.verdict == FAILS
    assert sorted(c.verdict for c in result.contexts) == [FAILS, HOLDS]


def test_an_undefined_metric_is_skipped_not_judged() -> None:
    nan = float("nan")
    runs = synthetic_runs(
        seeds("crt", [0.6, 0.6, 0.6], test_few_acc=nan) + seeds("ce", [0.5, 0.5, 0.5], test_few_acc=nan)
        + seeds("crt", [0.6, 0.61, 0.62], ratio=200.0) + seeds("ce", [0.5, 0.51, 0.52], ratio=200.0)
    )  # fmt: skip
    result = check_comparison(Comparison("crt", "ce", "test_few_acc"), runs)
    assert result.verdict == HOLDS
    assert sorted(c.verdict for c in result.contexts) == [HOLDS, "skipped"]


def test_a_claim_with_several_comparisons_needs_all_of_them() -> None:
    base = seeds("ce", [0.10, 0.11, 0.12])
    crt, tau, lws = (seeds(m, [0.30, 0.31, 0.32]) for m in ("crt", "tau-norm", "lws"))
    assert verdicts(synthetic_runs(base + crt + tau + lws))["decoupled-raise-few"] == HOLDS
    assert verdicts(synthetic_runs(base + crt + tau))["decoupled-raise-few"] == INCONCLUSIVE
    worse_lws = seeds("lws", [0.05, 0.06, 0.07])
    assert verdicts(synthetic_runs(base + crt + tau + worse_lws))["decoupled-raise-few"] == FAILS


@pytest.mark.parametrize(
    ("key", "winner", "losers"),
    [
        ("cw-beats-decoupled", "cw-b3rs-bet", ("crt", "tau-norm", "lws", "ncm", "lort")),
        ("lort-beats-retraining", "lort", ("crt", "tau-norm")),
        ("la-beats-ce", "la", ("ce",)),
    ],
)
def test_every_claim_holds_fails_and_lacks_runs(key: str, winner: str, losers: tuple[str, ...]) -> None:
    losing = [r for m in losers for r in seeds(m, [0.40, 0.41, 0.42])]
    assert verdicts(synthetic_runs(seeds(winner, [0.50, 0.51, 0.52]) + losing))[key] == HOLDS
    assert verdicts(synthetic_runs(seeds(winner, [0.30, 0.31, 0.32]) + losing))[key] == FAILS
    assert verdicts(synthetic_runs(seeds(winner, [0.50, 0.51]) + losing))[key] == INCONCLUSIVE
    assert verdicts(synthetic_runs(seeds(winner, [0.38, 0.41, 0.44]) + losing))[key] == INCONCLUSIVE


def test_render_prints_the_rule_each_verdict_and_the_numbers() -> None:
    runs = synthetic_runs(seeds("la", [0.60, 0.62, 0.64]) + seeds("ce", [0.50, 0.52, 0.54]))
    text = render(check_claims(runs))
    assert text.startswith("Rule: within each context")
    assert "[holds] LA loss (la) beats ERM (ce) on mean per-class accuracy (Menon et al. 2021)" in text
    assert (
        "cifar10-lt r=100 resnet32, recipe cifar-lt, 200 epochs: la 62.00 ± 2.00 (n=3) vs ce 52.00 ± 2.00 (n=3)" in text
    )
    assert "[inconclusive] lort > crt on top-1 accuracy (All)" in text
    assert text.rstrip().endswith(f"1 holds, 0 fails, 3 inconclusive (of {len(CLAIMS)} claims)")


def test_claims_command_on_an_empty_store_says_so_and_writes_nothing(tmp_path: Path, capsys) -> None:
    empty = tmp_path / "results"
    assert main(["claims", "--results-dir", str(empty)]) == 2
    err = capsys.readouterr().err
    assert f"nothing to report: no finished run of any suite in {empty / 'mlflow.db'}" in err
    assert "Traceback" not in err and not empty.exists()


def test_claims_md_and_the_strict_exit_status(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """claims.md is written beside the printed check; --strict exits 1 on a failing claim, never on an
    inconclusive one."""
    from harness.reports import report

    failing = synthetic_runs(seeds("la", [0.40, 0.41, 0.42]) + seeds("ce", [0.50, 0.51, 0.52]))
    noisy = synthetic_runs(seeds("la", [0.50, 0.60, 0.55]) + seeds("ce", [0.50, 0.56, 0.53]))
    for runs, strict_status in ((failing, 1), (noisy, 0)):
        monkeypatch.setattr(report, "load_runs", lambda *args, runs=runs: runs)
        assert main(["claims", "--results-dir", str(tmp_path)]) == 0
        assert main(["claims", "--strict", "--results-dir", str(tmp_path)]) == strict_status
    capsys.readouterr()
    md = (tmp_path / "claims.md").read_text()  # the last check: the noisy runs
    assert md.startswith("# Claims check")
    claim = "LA loss (la) beats ERM (ce) on mean per-class accuracy"
    scope = "(only recipes other than the paper's: not evidence about the paper's setting)"
    assert f"| la-beats-ce | {claim} | Menon et al. 2021 | **inconclusive** {scope} |" in md
    assert (
        "## la-beats-ce: inconclusive" in md
        and "  - cifar10-lt r=100 resnet32, recipe cifar-lt, 200 epochs: la 55.00" in md
    )


def test_a_method_run_only_with_tuned_hyperparameters_still_stands_for_the_method() -> None:
    """The quick suite runs cRT with augment=false: the claim about cRT must still find those runs, and a
    run with the default hyperparameters is preferred when both exist."""
    crt = Comparison("crt", "ce", "test_few_acc")
    tuned = seeds("crt", [0.80, 0.82, 0.81], params="augment=False")
    runs = synthetic_runs(tuned + seeds("ce", [0.10, 0.12, 0.11]))
    result = check_comparison(crt, runs)
    assert result.verdict == HOLDS and len(result.contexts) == 1
    both = synthetic_runs(tuned + seeds("crt", [0.05, 0.06, 0.07]) + seeds("ce", [0.10, 0.12, 0.11]))
    assert check_comparison(crt, both).verdict == FAILS  # the default-hyperparameter cRT is the one judged
