"""`ltbench claims`: check the seed papers' qualitative claims on the user's own runs.

A claim is one or more comparisons "A beats B on metric M" (each method at its default hyperparameters).
A comparison is checked separately in every *context* where both methods finished runs: the same dataset,
ratio, model, recipe and data options (runs.context_key), so decoupled methods are compared on the same
stage-1 backbone recipe and nothing is compared across unlike training.

The rule (RULE below, printed by the command):
- in a context, each method needs at least MIN_SEEDS finished seeds, else "not enough runs";
- Δ = mean_A − mean_B in percentage points over seeds, spread = sqrt(std_A² + std_B²) with sample stds;
  the comparison holds there when Δ > spread, and fails otherwise (including a positive Δ within the noise);
- a context where the metric is undefined (e.g. no few-shot class at this ratio) is skipped and said so;
- a comparison holds when it holds in every context that has enough runs (at least one); it fails if it fails
  in any; with no such context it is "not enough runs";
- a claim with several comparisons holds only when all of them hold, fails when any fails, and otherwise has
  not enough runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from harness.reports.formatting import mean_std
from harness.reports.runs import finished, pick_config, runs_of

MIN_SEEDS = 2
HOLDS, FAILS, NOT_ENOUGH = "holds", "fails", "not enough runs"
RULE = (
    f"Rule: within each context (same dataset, ratio, model, recipe, data options) both methods need >= {MIN_SEEDS} "
    "finished seeds; Δ = mean(A) − mean(B) in points; the comparison holds there iff Δ > sqrt(std(A)² + std(B)²) "
    "(sample stds over seeds), else it fails. A comparison holds if it holds in every context with enough "
    "runs, fails if it fails in any; a claim holds only if all its comparisons hold."
)
METRIC_NAMES = {
    "test_top1": "top-1 accuracy (All)",
    "test_mean_class_acc": "mean per-class accuracy",
    "test_few_acc": "Few-shot accuracy",
}


@dataclass(frozen=True)
class Comparison:
    better: str  # method expected to win
    worse: str
    metric: str  # a runs-frame metric column


@dataclass(frozen=True)
class Claim:
    key: str
    text: str
    source: str
    comparisons: tuple[Comparison, ...]


CLAIMS = (
    Claim(
        "la-beats-ce",
        "LA loss (la) beats ERM (ce) on mean per-class accuracy",
        "Menon et al. 2021",
        (Comparison("la", "ce", "test_mean_class_acc"),),
    ),
    Claim(
        "decoupled-raise-few",
        "cRT, τ-norm and LWS raise Few-shot accuracy over joint training (ce)",
        "Kang et al. 2020",
        tuple(Comparison(m, "ce", "test_few_acc") for m in ("crt", "tau-norm", "lws")),
    ),
    Claim(
        "cw-beats-decoupled",
        "end-to-end CW + B3RS + BET (cw-b3rs-bet) beats the decoupled methods (crt, tau-norm, lws, ncm, lort)",
        "Zhang et al. (arXiv 2112.05958)",
        tuple(Comparison("cw-b3rs-bet", m, "test_top1") for m in ("crt", "tau-norm", "lws", "ncm", "lort")),
    ),
    Claim(
        "lort-beats-retraining",
        "LORT beats cRT and τ-norm on the same stage-1 backbone",
        "LORT (Lu/Sun et al. 2024)",
        tuple(Comparison("lort", m, "test_top1") for m in ("crt", "tau-norm")),
    ),
)


@dataclass
class ContextResult:
    label: str  # where: dataset, ratio, model (and the context key when needed)
    verdict: str  # holds | fails | not enough runs | skipped
    line: str  # the numbers behind it


@dataclass
class ComparisonResult:
    comparison: Comparison
    verdict: str
    contexts: list[ContextResult] = field(default_factory=list)


@dataclass
class ClaimResult:
    claim: Claim
    verdict: str
    comparisons: list[ComparisonResult]


def _stats(values: pd.Series) -> tuple[float, float, int]:
    values = values.astype(float) * 100.0
    n = int(len(values))
    if values.isna().any():
        return math.nan, math.nan, n
    return float(values.mean()), float(values.std()) if n > 1 else math.nan, n


def _context_label(rows: pd.DataFrame, ambiguous: bool) -> str:
    first = rows.iloc[0]
    ratio = "native" if pd.isna(first.imbalance_ratio) else f"r={first.imbalance_ratio:g}"
    label = f"{first.dataset} {ratio} {first.model}"
    return f"{label} [{first.context_key}]" if ambiguous else label


def check_comparison(comparison: Comparison, runs: pd.DataFrame) -> ComparisonResult:
    done = finished(runs) if len(runs) else runs
    methods = {comparison.better.split("[")[0], comparison.worse.split("[")[0]}
    mine = done[done.method.isin(methods)] if len(done) else done
    contexts = []
    if len(mine):
        where = mine.groupby("context_key")[["dataset", "imbalance_ratio", "model"]].first()
        ambiguous = where.duplicated(keep=False)  # same dataset/ratio/model, other recipe or data options
        for context, rows in mine.groupby("context_key", sort=False):
            a, _ = pick_config(runs_of(rows, comparison.better))
            b, _ = pick_config(runs_of(rows, comparison.worse))
            if a.empty or b.empty:
                continue  # the two methods never ran together here: not a context of this comparison
            contexts.append(_judge(comparison, a, b, _context_label(rows, bool(ambiguous[context]))))
    contexts.sort(key=lambda c: c.label)
    judged = [c.verdict for c in contexts if c.verdict in (HOLDS, FAILS)]
    verdict = (FAILS if FAILS in judged else HOLDS) if judged else NOT_ENOUGH
    return ComparisonResult(comparison, verdict, contexts)


def _judge(comparison: Comparison, a: pd.DataFrame, b: pd.DataFrame, label: str) -> ContextResult:
    mean_a, std_a, n_a = _stats(a[comparison.metric])
    mean_b, std_b, n_b = _stats(b[comparison.metric])
    numbers = (
        f"{comparison.better} {mean_std(mean_a, std_a)} (n={n_a}) vs "
        f"{comparison.worse} {mean_std(mean_b, std_b)} (n={n_b})"
    )
    if n_a < MIN_SEEDS or n_b < MIN_SEEDS:
        return ContextResult(label, NOT_ENOUGH, f"{numbers}: needs >= {MIN_SEEDS} seeds each")
    if math.isnan(mean_a) or math.isnan(mean_b):
        return ContextResult(label, "skipped", f"{numbers}: metric undefined here (empty bucket)")
    delta = mean_a - mean_b
    spread = math.sqrt(std_a**2 + std_b**2)
    verdict = HOLDS if delta > spread else FAILS
    relation = ">" if delta > spread else "<="
    return ContextResult(label, verdict, f"{numbers}: Δ {delta:+.2f} {relation} spread {spread:.2f}")


def check_claims(runs: pd.DataFrame, claims: tuple[Claim, ...] = CLAIMS) -> list[ClaimResult]:
    results = []
    for claim in claims:
        comparisons = [check_comparison(c, runs) for c in claim.comparisons]
        verdicts = [c.verdict for c in comparisons]
        if FAILS in verdicts:
            verdict = FAILS
        elif all(v == HOLDS for v in verdicts):
            verdict = HOLDS
        else:
            verdict = NOT_ENOUGH
        results.append(ClaimResult(claim, verdict, comparisons))
    return results


def render(results: list[ClaimResult]) -> str:
    """The command's output: the rule, then each claim with its verdict and the numbers behind it."""
    lines = [RULE, ""]
    for result in results:
        claim = result.claim
        lines.append(f"[{result.verdict}] {claim.text} ({claim.source})")
        for comp in result.comparisons:
            c = comp.comparison
            metric = METRIC_NAMES.get(c.metric, c.metric)
            lines.append(f"  [{comp.verdict}] {c.better} > {c.worse} on {metric}")
            if not comp.contexts:
                lines.append(f"      no context where both {c.better} and {c.worse} finished runs")
            for ctx in comp.contexts:
                lines.append(f"      {ctx.label}: {ctx.line} -> {ctx.verdict}")
        lines.append("")
    counts = {v: sum(r.verdict == v for r in results) for v in (HOLDS, FAILS, NOT_ENOUGH)}
    lines.append(", ".join(f"{n} {v}" for v, n in counts.items()) + f" (of {len(results)} claims)")
    return "\n".join(lines) + "\n"
