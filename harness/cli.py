"""The `ltbench` command line. User errors print one line and exit with code 2, never a traceback."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from harness.errors import LtbenchError

RESULTS_ENV = "LTBENCH_RESULTS"


def _results_dir(args: argparse.Namespace) -> Path:
    return Path(args.results_dir or os.environ.get(RESULTS_ENV) or "results")


def cmd_run(args: argparse.Namespace) -> int:
    from harness.runner import dry_run, run_suite

    if args.dry_run:
        print(dry_run(args.suite, args.set))
        return 0
    summary = run_suite(
        args.suite,
        args.set,
        args.address,
        args.tracking_uri,
        _results_dir(args),
        verbose=0 if args.quiet else 1,
    )
    print(summary.leaderboard_md)
    print(
        f"suite {summary.suite}: {summary.total} trials, {summary.skipped} already finished, "
        f"{summary.ran} run, {len(summary.failed)} failed, {summary.missing} not finished; "
        f"{summary.seconds:.0f} s wall"
    )
    for label, reason in summary.failed:
        print(f"  FAILED {label}: {reason}")
    print(f"leaderboard: {_results_dir(args) / summary.suite / 'leaderboard.md'}")
    return 0 if summary.ok else 1


def cmd_report(args: argparse.Namespace) -> int:
    from harness.reports.report import build_report

    outcome = build_report(args.suite, args.set, args.tracking_uri, _results_dir(args), plots=not args.no_plots)
    print(outcome.leaderboard_md)
    print(f"leaderboard: {outcome.out_dir / 'leaderboard.md'} (.csv, .tex; trials.csv lists every trial)")
    if outcome.plots:
        print(f"plots: {len(outcome.plots)} files in {outcome.out_dir / 'plots'}")
    for note in outcome.notes:
        print(f"  note: {note}")
    return 0


def cmd_tables(args: argparse.Namespace) -> int:
    from harness.reports.report import build_tables

    outcome = build_tables(args.suites or None, args.tracking_uri, _results_dir(args))
    for line in outcome.summary:
        print(line)
    print(f"tables: {_results_dir(args) / 'tables'} (index.md; each table as .md, .csv, .tex)")
    return 0


def cmd_claims(args: argparse.Namespace) -> int:
    from harness.reports.report import build_claims

    outcome = build_claims(args.suites or None, args.tracking_uri, _results_dir(args))
    print(outcome.text, end="")
    print(f"written: {outcome.path}")
    return 1 if args.strict and outcome.any_fails else 0


def cmd_describe(args: argparse.Namespace) -> int:
    from harness.data import DATASETS, DataOptions

    spec = DATASETS.get(args.dataset)
    options = DataOptions(root=args.root, max_per_class=args.max_per_class)
    info = spec.describe(args.imbalance_ratio, options).as_dict()
    if args.json:
        print(json.dumps(info))
        return 0
    ratio = "native" if args.imbalance_ratio is None else f"{args.imbalance_ratio:g}"
    print(f"{spec.name}, imbalance ratio {ratio}: {spec.num_classes} classes")
    print("per-class training counts (class order): " + " ".join(str(n) for n in info["class_counts"]))
    print(f"total training images: {info['num_train']} (of which {info['num_val']} carved for validation)")
    b = info["buckets"]
    print(f"classes per bucket: many (>100) {b['many']}, medium (20-100) {b['medium']}, few (<20) {b['few']}")
    print(f"test images: {info['num_test']}")
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    from harness.data.fetch import fetch

    print(f"{args.dataset}: files in {fetch(args.dataset, args.root)}")
    return 0


def cmd_methods(args: argparse.Namespace) -> int:
    from harness.plugin import load_methods, param_spec

    registry = load_methods()
    for name in registry.names():
        method = registry.get(name)
        kind = f"stage two on the shared {method.stage1} backbone" if method.stage1 else "end to end"
        print(f"{name:<12} {method.description}")
        params = param_spec(method)
        sampler = dict((p, d) for p, _, d in params).get("sampler", method.sampler)
        print(f"{'':<13}[{kind}; sampler: {sampler}]")
        for pname, ptype, default in params:
            print(f"{'':<13}{pname}: {ptype} = {default!r}")
    return 0


def cmd_suites(args: argparse.Namespace) -> int:
    from harness.suite import build_suite, builtin_suites

    for name in builtin_suites():
        suite = build_suite(name)
        print(f"{name:<14} {len(suite):>4} trials  {suite.description}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from harness.bench import format_table, run_bench, write_bench

    log = lambda message: print(message, file=sys.stderr)  # noqa: E731  (progress apart from the table)
    result = run_bench(args.device, args.quick, args.data_root, args.threads, log)
    path = write_bench(result, _results_dir(args) / "bench.json")
    print(format_table(result))
    print(f"written: {path}")
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    from harness.tracking import default_tracking_uri

    uri = args.tracking_uri or default_tracking_uri(_results_dir(args))
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--port", str(args.port)]
    print("starting: " + " ".join(command))
    os.execv(sys.executable, command)
    return 0  # not reached


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ltbench", description="Long-tailed recognition benchmark harness")
    sub = parser.add_subparsers(dest="command", required=True)

    def tracking_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite under the results dir)")
        p.add_argument("--results-dir", help=f"where results go (default: ${RESULTS_ENV} or ./results)")

    run = sub.add_parser("run", help="run a suite's trials with Ray Tune")
    run.add_argument("suite", help="a built-in suite name or a path to a suite YAML")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a suite key")
    run.add_argument("--address", help="Ray cluster address ('auto' joins a running cluster)")
    run.add_argument("--quiet", action="store_true", help="no per-epoch progress lines")
    run.add_argument("--dry-run", action="store_true", help="print the plan (shared stages and their users)")
    tracking_args(run)
    run.set_defaults(func=cmd_run)

    report = sub.add_parser("report", help="rebuild a suite's leaderboard and plots from MLflow")
    report.add_argument("suite", nargs="?", default="quick")
    report.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    report.add_argument("--no-plots", action="store_true", help="write the leaderboard only")
    tracking_args(report)
    report.set_defaults(func=cmd_report)

    tables = sub.add_parser("tables", help="the seed papers' tables: published vs ltbench, side by side")
    tables.add_argument("suites", nargs="*", metavar="SUITE", help="suites to read (default: all)")
    tracking_args(tables)
    tables.set_defaults(func=cmd_tables)

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
    data_sub = data.add_subparsers(dest="data_command", required=True)
    describe = data_sub.add_parser("describe", help="class counts and shot buckets of a long-tailed dataset")
    describe.add_argument("dataset")
    describe.add_argument("--imbalance-ratio", type=float, default=None)
    describe.add_argument("--root", default=None, help="dataset root folder")
    describe.add_argument("--max-per-class", type=int, default=None)
    describe.add_argument("--json", action="store_true")
    describe.set_defaults(func=cmd_describe)
    fetch = data_sub.add_parser("fetch", help="get a dataset's files if they are missing")
    fetch.add_argument("dataset")
    fetch.add_argument("--root", default=None, help="dataset root folder")
    fetch.set_defaults(func=cmd_fetch)

    sub.add_parser("methods", help="list methods and their hyperparameters").set_defaults(func=cmd_methods)
    sub.add_parser("suites", help="list built-in suites").set_defaults(func=cmd_suites)

    bench = sub.add_parser("bench", help="measure speed as ratios against same-process baselines")
    bench.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    bench.add_argument("--quick", action="store_true", help="small sizes: about a minute on two CPU cores")
    bench.add_argument("--data-root", help="where to look for Fashion-MNIST / CIFAR-10 files")
    bench.add_argument("--threads", type=int, help="torch threads (default: one per CPU; fewer on a busy machine)")
    bench.add_argument("--results-dir", help=f"bench.json goes here (default: ${RESULTS_ENV} or ./results)")
    bench.set_defaults(func=cmd_bench)

    ui = sub.add_parser("ui", help="open the MLflow UI on the results store")
    ui.add_argument("--port", type=int, default=5000)
    tracking_args(ui)
    ui.set_defaults(func=cmd_ui)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except LtbenchError as e:
        print(f"ltbench: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "ltbench: interrupted; finished trials are kept, rerun the same command to resume",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
