"""`ltbench claims`: check the seed papers' qualitative claims on the user's own runs.

A claim is one or more comparisons "A beats B on metric M" (each method at its default hyperparameters).
A comparison is checked separately in every *context* where both methods finished runs: the same dataset,
ratio, model, recipe and data options (runs.context_key), so decoupled methods are compared on the same
stage-1 backbone recipe and nothing is compared across unlike training.

The rule (RULE below, printed by the command), with Δ = mean_A − mean_B in percentage points over seeds and
spread = sqrt(std_A² + std_B²) (sample stds):
- in a context the comparison *holds* when Δ > spread, *fails* when Δ < −spread (the opposite holds beyond the
  noise), and is *inconclusive* when |Δ| <= spread or either method has fewer than MIN_SEEDS finished seeds;
  a context where the metric is undefined (e.g. no few-shot class at this ratio) is skipped and said so;
- a comparison fails if it fails in any context; it holds if it holds in every context with enough seeds
  (at least one); otherwise it is inconclusive;
- a claim fails if any of its comparisons fails, holds if all hold, and is otherwise inconclusive.
So "fails" is evidence against the paper, "inconclusive" only a lack of evidence either way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from harness.core.trial import ratio_label
from harness.reports.formatting import markdown_table, mean_std
from harness.reports.runs import finished, pick_config, runs_of

MIN_SEEDS = 2
HOLDS, FAILS, INCONCLUSIVE, SKIPPED = "holds", "fails", "inconclusive", "skipped"
VERDICTS = (HOLDS, FAILS, INCONCLUSIVE)
RULE = (
    "Rule: within each context (same dataset, ratio, model, recipe, data options), with Δ = mean(A) − mean(B) "
    "in points and spread = sqrt(std(A)² + std(B)²) (sample stds over seeds): A > B holds there if "
    "Δ > spread, fails if Δ < −spread (B beats A beyond the noise), and is inconclusive if |Δ| <= spread or "
    f"either method has fewer than {MIN_SEEDS} finished seeds. A comparison fails if it fails in any context and "
    "holds if it holds in every context with enough seeds; a claim fails if any comparison fails and holds if "
    "all hold. Otherwise: inconclusive."
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
    verdict: str  # holds | fails | inconclusive | skipped
    line: str  # the numbers behind it
    too_few_seeds: bool = False  # inconclusive for lack of runs, not for a small difference


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
    ratio = ratio_label(first.imbalance_ratio)
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
    return ComparisonResult(comparison, _comparison_verdict(contexts), contexts)


def _comparison_verdict(contexts: list[ContextResult]) -> str:
    verdicts = [c.verdict for c in contexts if not c.too_few_seeds and c.verdict != SKIPPED]
    if FAILS in verdicts:
        return FAILS
    return HOLDS if verdicts and all(v == HOLDS for v in verdicts) else INCONCLUSIVE


def _judge(comparison: Comparison, a: pd.DataFrame, b: pd.DataFrame, label: str) -> ContextResult:
    mean_a, std_a, n_a = _stats(a[comparison.metric])
    mean_b, std_b, n_b = _stats(b[comparison.metric])
    numbers = (
        f"{comparison.better} {mean_std(mean_a, std_a)} (n={n_a}) vs "
        f"{comparison.worse} {mean_std(mean_b, std_b)} (n={n_b})"
    )
    if n_a < MIN_SEEDS or n_b < MIN_SEEDS:
        return ContextResult(label, INCONCLUSIVE, f"{numbers}: too few seeds (needs >= {MIN_SEEDS} each)", True)
    if math.isnan(mean_a) or math.isnan(mean_b):
        return ContextResult(label, SKIPPED, f"{numbers}: metric undefined here (empty bucket)")
    delta = mean_a - mean_b
    spread = math.sqrt(std_a**2 + std_b**2)
    if delta > spread:
        return ContextResult(label, HOLDS, f"{numbers}: Δ {delta:+.2f} > spread {spread:.2f}")
    if delta < -spread:
        return ContextResult(label, FAILS, f"{numbers}: Δ {delta:+.2f} < −spread {spread:.2f}")
    return ContextResult(label, INCONCLUSIVE, f"{numbers}: |Δ| {abs(delta):.2f} <= spread {spread:.2f}")


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
            verdict = INCONCLUSIVE
        results.append(ClaimResult(claim, verdict, comparisons))
    return results


def _detail_lines(result: ClaimResult, outer: str, inner: str, bullet: str) -> list[str]:
    lines = []
    for comp in result.comparisons:
        c = comp.comparison
        metric = METRIC_NAMES.get(c.metric, c.metric)
        lines.append(f"{outer}{bullet}[{comp.verdict}] {c.better} > {c.worse} on {metric}")
        if not comp.contexts:
            lines.append(f"{inner}{bullet}no context where both {c.better} and {c.worse} finished runs")
        for ctx in comp.contexts:
            lines.append(f"{inner}{bullet}{ctx.label}: {ctx.line} -> {ctx.verdict}")
    return lines


def summary_line(results: list[ClaimResult]) -> str:
    counts = {v: sum(r.verdict == v for r in results) for v in VERDICTS}
    return ", ".join(f"{n} {v}" for v, n in counts.items()) + f" (of {len(results)} claims)"


def render(results: list[ClaimResult]) -> str:
    """The command's output: the rule, then each claim with its verdict and the numbers behind it."""
    lines = [RULE, ""]
    for result in results:
        claim = result.claim
        lines.append(f"[{result.verdict}] {claim.text} ({claim.source})")
        lines += _detail_lines(result, "  ", "      ", "")
        lines.append("")
    lines.append(summary_line(results))
    return "\n".join(lines) + "\n"


def render_markdown(results: list[ClaimResult], suites: list[str] | None) -> str:
    """results/claims.md: a verdict table first, then each claim's comparisons and numbers."""
    read = ", ".join(suites) if suites else "every suite in the results store"
    rows = [[r.claim.key, r.claim.text, r.claim.source, f"**{r.verdict}**"] for r in results]
    lines = [
        "# Claims check",
        "",
        f"Runs read: {read}. {summary_line(results)}.",
        "",
        RULE,
        "",
        markdown_table(["claim", "statement", "source", "verdict"], rows),
        "",
    ]
    for result in results:
        lines += [f"## {result.claim.key}: {result.verdict}", "", result.claim.text + f" ({result.claim.source}).", ""]
        lines += _detail_lines(result, "", "  ", "- ")
        lines.append("")
    return "\n".join(lines)
