"""The `ltbench` argument parser: every command, argument, default and help text."""

from __future__ import annotations

import argparse

from harness import __version__
from harness.cli.commands import (
    RESULTS_ENV,
    cmd_bench,
    cmd_claims,
    cmd_describe,
    cmd_fetch,
    cmd_methods,
    cmd_report,
    cmd_reproduce,
    cmd_run,
    cmd_suites,
    cmd_tables,
    cmd_ui,
    paper_suites,
)
from harness.core.trial import DEFAULT_MAX_RETRIES


def build_parser() -> argparse.ArgumentParser:
    """Every argument says what it does and its default (a test walks the parser to check)."""
    from harness.reports.ui import DEFAULT_HOST, DEFAULT_PORT

    parser = argparse.ArgumentParser(prog="ltbench", description="Long-tailed recognition benchmark harness")
    parser.add_argument("--version", action="version", version=f"ltbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def tracking_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite:///<results dir>/mlflow.db)")
        p.add_argument("--results-dir", help=f"where results go (default: ${RESULTS_ENV}, else ./results)")
        p.add_argument(
            "--storage",
            metavar="URI",
            help="where trial files (and, for a new experiment, MLflow artifacts) live: a path, "
            "s3://bucket/prefix[?endpoint_override=host:port&scheme=http] or gs://bucket/prefix "
            "(default: $LTBENCH_STORAGE, else <results dir>/trials)",
        )

    def overrides(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a suite key by dotted path, the value read as YAML, e.g. recipe.epochs=5; "
            "repeatable (default: none)",
        )

    def run_args(p: argparse.ArgumentParser) -> None:
        overrides(p)
        p.add_argument(
            "--address", help="Ray cluster address; 'auto' joins a running cluster (default: a new local Ray instance)"
        )
        p.add_argument("--quiet", action="store_true", help="no per-epoch lines, only progress (default: off)")
        p.add_argument(
            "--max-retries",
            type=int,
            default=DEFAULT_MAX_RETRIES,
            help="times a trial is retried, from its checkpoint, when its worker process or node dies; a trial's "
            f"own error is never retried (default: {DEFAULT_MAX_RETRIES})",
        )
        p.add_argument(
            "--group-size",
            metavar="K",
            help="trials trained together in one worker process, or 'auto' (the size ltbench bench measured "
            "to pay on this device, else 1); compatible trials only: same dataset, ratio, data, model, recipe "
            "(default: the suite's group_size, auto)",
        )
        p.add_argument(
            "--dry-run",
            action="store_true",
            help="print the plan as a table (dataset x ratio x method), the trials already finished, any warnings "
            "(missing data files, empty buckets), the estimated GPU-hours and wall time, and the grouping of trials "
            "into worker processes; run nothing (default: off)",
        )
        p.add_argument(
            "--verbose", action="store_true", help="with --dry-run: also list every trial and its key (default: off)"
        )
        tracking_args(p)

    run = sub.add_parser("run", help="run a suite's unfinished trials with Ray Tune, then write its leaderboard")
    run.add_argument("suite", help="a built-in suite (see ltbench suites) or a path to a suite YAML")
    run_args(run)
    run.set_defaults(func=cmd_run)

    report = sub.add_parser("report", help="rebuild a suite's leaderboard and plots from MLflow")
    report.add_argument("suite", nargs="?", default="quick", help="a built-in suite or a suite YAML (default: quick)")
    overrides(report)
    report.add_argument("--no-plots", action="store_true", help="write the leaderboard only (default: off)")
    tracking_args(report)
    report.set_defaults(func=cmd_report)

    tables = sub.add_parser("tables", help="the seed papers' tables: published vs ltbench, side by side")
    tables.add_argument("suites", nargs="*", metavar="SUITE", help="suites to read (default: all)")
    tracking_args(tables)
    tables.set_defaults(func=cmd_tables)

    reproduce = sub.add_parser(
        "reproduce", help="run a paper's suite (paper-PAPER), then write its table beside the published one"
    )
    papers = ", ".join(paper_suites())
    reproduce.add_argument("paper", help=f"the paper whose built-in suite paper-PAPER runs: {papers}")
    run_args(reproduce)
    reproduce.set_defaults(func=cmd_reproduce)

    claims = sub.add_parser("claims", help="check the seed papers' qualitative claims on your runs")
    claims.add_argument("suites", nargs="*", metavar="SUITE", help="suites to read (default: all)")
    claims.add_argument(
        "--strict",
        action="store_true",
        help="exit with status 1 when a claim fails, for CI (inconclusive claims never do; default: off)",
    )
    tracking_args(claims)
    claims.set_defaults(func=cmd_claims)

    data = sub.add_parser("data", help="dataset tools")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="COMMAND")
    describe = data_sub.add_parser("describe", help="class counts and shot buckets of a long-tailed dataset")
    describe.add_argument("dataset", help="cifar10-lt, cifar100-lt, fashion-mnist-lt or imagenet-lt")
    describe.add_argument(
        "--imbalance-ratio",
        type=float,
        default=None,
        help="n_max / n_min, e.g. 100 (default: none; required except for imagenet-lt)",
    )
    describe.add_argument(
        "--root", default=None, help="dataset root folder (default: $LTBENCH_DATA, ./data, ~/.cache/ltbench)"
    )
    describe.add_argument(
        "--max-per-class", type=int, default=None, help="cap on the head class's images (default: none)"
    )
    describe.add_argument(
        "--val-per-class", type=int, default=None, help="validation images per class (default: the dataset's)"
    )
    describe.add_argument("--json", action="store_true", help="print one JSON object (default: text)")
    describe.set_defaults(func=cmd_describe)
    fetch = data_sub.add_parser("fetch", help="get a dataset's files if they are missing")
    fetch.add_argument("dataset", help="cifar10-lt, cifar100-lt or fashion-mnist-lt (imagenet-lt: by hand)")
    fetch.add_argument("--root", default=None, help="dataset root folder (default: $LTBENCH_DATA, else ./data)")
    fetch.set_defaults(func=cmd_fetch)

    sub.add_parser("methods", help="list methods and their hyperparameters").set_defaults(func=cmd_methods)
    sub.add_parser("suites", help="list built-in suites").set_defaults(func=cmd_suites)

    bench = sub.add_parser("bench", help="measure speed as ratios against same-process baselines")
    bench.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    bench.add_argument(
        "--quick", action="store_true", help="small sizes: about a minute on two CPU cores (default: full sizes)"
    )
    bench.add_argument(
        "--data-root", help="where to look for Fashion-MNIST / CIFAR-10 files (default: the usual data roots)"
    )
    bench.add_argument("--threads", type=int, help="torch threads (default: one per CPU; fewer on a busy machine)")
    bench.add_argument("--results-dir", help=f"bench.json goes here (default: ${RESULTS_ENV}, else ./results)")
    bench.add_argument(
        "--makespan",
        action="store_true",
        help="only section (e), the cifar-lt makespan, into bench.json beside the other sections (default: all)",
    )
    bench.add_argument(
        "--grouping",
        action="store_true",
        help="only section (f), K trials per process (stepping in turn and fused into one network; also captured "
        "and on per-trial streams on a GPU), into bench.json beside the other sections (default: all)",
    )
    bench.add_argument(
        "--compile",
        action="store_true",
        help="with --grouping: measure torch.compile(mode='reduce-overhead') against eager instead (K = 1 and 4; "
        "compile time reported), into its own section of bench.json (default: not measured)",
    )
    bench.add_argument(
        "--ray-gpus",
        type=int,
        help="(e) also on a real Ray run with this many fake GPUs (about 1 CPU core per 16 trials at once; "
        "default: the event simulation only)",
    )
    bench.add_argument("--packing", type=int, help="(e) Ray run: trials per fake GPU (default: the suite's, 4)")
    bench.add_argument(
        "--time-scale",
        type=float,
        default=0.01,
        help="(e) Ray run: real seconds slept per cost-model second (default: 0.01)",
    )
    bench.add_argument(
        "--max-trials",
        type=int,
        help="(e) Ray run: the plan's first N end-to-end trials and backbones, with the decoupled trials on them "
        "(default: all)",
    )
    bench.add_argument(
        "--load",
        type=int,
        metavar="N",
        help="only section (g): N simulated trials (a multiple of 40) through ltbench run's driver, Tune and MLflow; "
        "figures to load.json (default: not run)",
    )
    bench.add_argument("--load-epochs", type=int, default=4, help="(g) epochs per simulated trial (default: 4)")
    bench.add_argument(
        "--load-epoch-seconds", type=float, default=0.1, help="(g) seconds each simulated epoch sleeps (default: 0.1)"
    )
    bench.add_argument(
        "--load-concurrency",
        type=int,
        help="(g) simulated trials at once (default: one per CPU; more slots than cores make Tune start and kill "
        "workers for trials this short, see docs/benchmarks.md)",
    )
    bench.set_defaults(func=cmd_bench)

    ui = sub.add_parser("ui", help="the MLflow UI on the results store, opened on a suite's runs")
    ui.add_argument("suite", nargs="?", default=None, help="the suite whose runs to open (default: every suite)")
    ui.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help=f"interface to listen on; 0.0.0.0 for every one (default: {DEFAULT_HOST})",
    )
    ui.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port to listen on (default: {DEFAULT_PORT})")
    tracking_args(ui)
    ui.set_defaults(func=cmd_ui)
    return parser
