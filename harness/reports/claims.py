"""`ltbench claims`: check the seed papers' qualitative claims on the user's own runs.

A claim is one or more comparisons "A beats B on metric M" (each method at its default hyperparameters).
A comparison is checked separately in every *context* where both methods finished runs: the same dataset,
ratio, model, recipe and data options (runs.context_key), so decoupled methods are compared on the same
stage-1 backbone recipe and nothing is compared across unlike training.

The rule (RULE below, printed by the command) is a stated test over seeds, not a rule of thumb: in a context,
Welch's two-sided t-test (unequal variances) of A's seeds against B's at level ALPHA gives
- *holds* when mean A > mean B and p < ALPHA, *fails* when mean A < mean B and p < ALPHA (the opposite holds
  beyond the noise), *inconclusive* when p >= ALPHA;
- *inconclusive* with "too few seeds" when either method has fewer than MIN_SEEDS finished seeds: two seeds
  give a standard deviation too rough to test with (two seeds 0.01 apart would make any gap look certain);
- *skipped* where the metric is undefined (e.g. no few-shot class at this ratio), and said so.
A comparison fails if it fails in any context; it holds if it holds in every context with enough seeds (at
least one); otherwise it is inconclusive. A claim fails if any comparison fails, holds if all hold, and is
otherwise inconclusive. So "fails" is evidence against the paper, "inconclusive" only a lack of evidence.

Each context names its recipe (from the runs' recorded configuration) and says when it is not the paper's:
a verdict on a 12-epoch Fashion-MNIST recipe says nothing about a 200-epoch CIFAR one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd
from scipy import stats

from harness.core.trial import ratio_label
from harness.reports.formatting import markdown_table, mean_std
from harness.reports.runs import finished, pick_config, runs_of
from harness.training.recipes import RECIPES

MIN_SEEDS = 3
ALPHA = 0.05  # the test's level: a verdict is wrong at most 5% of the time when the methods are equal
HOLDS, FAILS, INCONCLUSIVE, SKIPPED = "holds", "fails", "inconclusive", "skipped"
VERDICTS = (HOLDS, FAILS, INCONCLUSIVE)
RULE = (
    "Rule: within each context (same dataset, ratio, model, recipe, data options), Welch's two-sided t-test "
    f"of A's seeds against B's at level {ALPHA:g}, with Δ = mean(A) − mean(B) in points: A > B holds there if "
    f"Δ > 0 and p < {ALPHA:g}, fails if Δ < 0 and p < {ALPHA:g} (B beats A beyond the noise), and is inconclusive "
    f"if p >= {ALPHA:g} or either method has fewer than {MIN_SEEDS} finished seeds. A comparison fails if it fails "
    "in any context and holds if it holds in every context with enough seeds; a claim fails if any comparison "
    "fails and holds if all hold. Otherwise: inconclusive. A context on another recipe than the paper's is no "
    "evidence about the paper's setting, and says so."
)
SHORT_RECIPE = "a short recipe: not evidence about the paper's setting"
OTHER_RECIPE = "not the paper's recipe: not evidence about the paper's setting"
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
    paper_recipes: tuple[str, ...]  # the registered recipes of the paper's own setting


CLAIMS = (
    Claim(
        "la-beats-ce",
        "LA loss (la) beats ERM (ce) on mean per-class accuracy",
        "Menon et al. 2021",
        (Comparison("la", "ce", "test_mean_class_acc"),),
        ("menon2021-cifar", "menon2021-imagenet"),
    ),
    Claim(
        "decoupled-raise-few",
        "cRT, τ-norm and LWS raise Few-shot accuracy over joint training (ce)",
        "Kang et al. 2020",
        tuple(Comparison(m, "ce", "test_few_acc") for m in ("crt", "tau-norm", "lws")),
        ("imagenet-lt",),
    ),
    Claim(
        "cw-beats-decoupled",
        "end-to-end CW + B3RS + BET (cw-b3rs-bet) beats the decoupled methods (crt, tau-norm, lws, ncm, lort)",
        "Zhang et al. (arXiv 2112.05958)",
        tuple(Comparison("cw-b3rs-bet", m, "test_top1") for m in ("crt", "tau-norm", "lws", "ncm", "lort")),
        ("cifar-lt", "imagenet-lt"),
    ),
    Claim(
        "lort-beats-retraining",
        "LORT beats cRT and τ-norm on the same stage-1 backbone",
        "LORT (Lu/Sun et al. 2024)",
        tuple(Comparison("lort", m, "test_top1") for m in ("crt", "tau-norm")),
        ("lort-stage1",),
    ),
)


@dataclass
class ContextResult:
    label: str  # where: dataset, ratio, model, recipe (and the context key when needed)
    verdict: str  # holds | fails | inconclusive | skipped
    line: str  # the numbers behind it
    too_few_seeds: bool = False  # inconclusive for lack of runs, not for a small difference
    papers_recipe: bool = False  # trained on the paper's own recipe


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
    epochs = f", {int(first.epochs)} epochs" if pd.notna(first.epochs) and first.epochs >= 0 else ""
    label = f"{first.dataset} {ratio} {first.model}, recipe {first.recipe}{epochs}"
    return f"{label} [{first.context_key}]" if ambiguous else label


def recipe_note(rows: pd.DataFrame, paper_recipes: tuple[str, ...]) -> str | None:
    """None when the context's runs used one of the paper's recipes unchanged, else why they are no evidence
    about the paper's setting (a shorter training than the paper's, or another recipe)."""
    if not paper_recipes or rows.recipe.iloc[0] in paper_recipes:
        return None
    papers_epochs = min(RECIPES.get(name).epochs for name in paper_recipes)
    epochs = rows.epochs.iloc[0]
    return SHORT_RECIPE if pd.notna(epochs) and 0 <= epochs < papers_epochs else OTHER_RECIPE


def check_comparison(
    comparison: Comparison, runs: pd.DataFrame, paper_recipes: tuple[str, ...] = ()
) -> ComparisonResult:
    """The comparison in every context where both methods finished runs; `paper_recipes` (the claim's) mark the
    contexts that are no evidence about the paper's setting."""
    done = finished(runs) if len(runs) else runs
    methods = {comparison.better.split("[")[0], comparison.worse.split("[")[0]}
    mine = done[done.method.isin(methods)] if len(done) else done
    contexts = []
    if len(mine):
        where = mine.groupby("context_key")[["dataset", "imbalance_ratio", "model", "recipe"]].first()
        ambiguous = where.duplicated(keep=False)  # same dataset/ratio/model/recipe, other data options
        for context, rows in mine.groupby("context_key", sort=False):
            a, _ = pick_config(runs_of(rows, comparison.better))
            b, _ = pick_config(runs_of(rows, comparison.worse))
            if a.empty or b.empty:
                continue  # the two methods never ran together here: not a context of this comparison
            result = _judge(comparison, a, b, _context_label(rows, bool(ambiguous[context])))
            note = recipe_note(rows, paper_recipes)
            result.papers_recipe = bool(paper_recipes) and note is None
            if note:
                result.line += f" ({note})"
            contexts.append(result)
    contexts.sort(key=lambda c: c.label)
    return ComparisonResult(comparison, _comparison_verdict(contexts), contexts)


def _comparison_verdict(contexts: list[ContextResult]) -> str:
    verdicts = [c.verdict for c in contexts if not c.too_few_seeds and c.verdict != SKIPPED]
    if FAILS in verdicts:
        return FAILS
    return HOLDS if verdicts and all(v == HOLDS for v in verdicts) else INCONCLUSIVE


def welch_p(a: pd.Series, b: pd.Series) -> float:
    """Welch's two-sided p-value of two samples' means (unequal variances); 0 or 1 when both have no spread."""
    if a.std() == 0 and b.std() == 0:
        return 1.0 if a.mean() == b.mean() else 0.0
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


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
    p = welch_p(a[comparison.metric].astype(float) * 100.0, b[comparison.metric].astype(float) * 100.0)
    test = f"Δ {delta:+.2f}, Welch p = {p:.3g}"
    if p < ALPHA:
        return ContextResult(label, HOLDS if delta > 0 else FAILS, f"{numbers}: {test} < {ALPHA:g}")
    return ContextResult(label, INCONCLUSIVE, f"{numbers}: {test} >= {ALPHA:g}")


def check_claims(runs: pd.DataFrame, claims: tuple[Claim, ...] = CLAIMS) -> list[ClaimResult]:
    results = []
    for claim in claims:
        comparisons = [check_comparison(c, runs, claim.paper_recipes) for c in claim.comparisons]
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


def evidence_scope(result: ClaimResult) -> str:
    """' (...)' when every context that decided the claim used another recipe than the paper's, else ''."""
    judged = [c for comp in result.comparisons for c in comp.contexts if not c.too_few_seeds and c.verdict != SKIPPED]
    if not judged or any(c.papers_recipe for c in judged):
        return ""
    return " (only recipes other than the paper's: not evidence about the paper's setting)"


def summary_line(results: list[ClaimResult]) -> str:
    counts = {v: sum(r.verdict == v for r in results) for v in VERDICTS}
    return ", ".join(f"{n} {v}" for v, n in counts.items()) + f" (of {len(results)} claims)"


def render(results: list[ClaimResult]) -> str:
    """The command's output: the rule, then each claim with its verdict and the numbers behind it."""
    lines = [RULE, ""]
    for result in results:
        claim = result.claim
        lines.append(f"[{result.verdict}] {claim.text} ({claim.source}){evidence_scope(result)}")
        lines += _detail_lines(result, "  ", "      ", "")
        lines.append("")
    lines.append(summary_line(results))
    return "\n".join(lines) + "\n"


def render_markdown(results: list[ClaimResult], suites: list[str] | None) -> str:
    """results/claims.md: a verdict table first, then each claim's comparisons and numbers."""
    read = ", ".join(suites) if suites else "every suite in the results store"
    rows = [[r.claim.key, r.claim.text, r.claim.source, f"**{r.verdict}**{evidence_scope(r)}"] for r in results]
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
