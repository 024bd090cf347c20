"""The `ltbench` command line. User errors print one line and exit with code 2, never a traceback."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from harness.config import DEFAULT_MAX_RETRIES
from harness.errors import LtbenchError, TrackingUnavailable

RESULTS_ENV = "LTBENCH_RESULTS"
# Exit codes: 0 all trials finished, 1 some trial failed, 2 bad input, 3 the tracking server went away
# (results kept on disk; rerun to log them), 130 interrupted.
TRACKING_UNAVAILABLE_EXIT = 3


def _results_dir(args: argparse.Namespace) -> Path:
    return Path(args.results_dir or os.environ.get(RESULTS_ENV) or "results")


def _storage(args: argparse.Namespace) -> str | None:
    """The trial store given (--storage, else $LTBENCH_STORAGE); None: `<results dir>/trials`."""
    from harness.storage import STORAGE_ENV

    return getattr(args, "storage", None) or os.environ.get(STORAGE_ENV) or None


def _reach_artifacts(args: argparse.Namespace) -> None:
    """Commands that read MLflow artifacts reach a remote store's S3-compatible endpoint through it."""
    from harness.storage import Storage
    from harness.tracking import use_artifact_store

    if (storage := _storage(args)) is not None:
        use_artifact_store(Storage.open(storage))


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
        storage=_storage(args),
        max_retries=args.max_retries,
    )
    print(summary.leaderboard_md)
    print(
        f"suite {summary.suite}: {summary.total} trials, {summary.skipped} already finished, "
        f"{summary.ran} run, {len(summary.failed)} failed, {summary.missing} not finished; "
        f"{summary.seconds:.0f} s wall"
    )
    for label, reason in summary.failed:
        print(f"  FAILED {label}: {reason}")
    for note in summary.notes:
        print(f"  note: {note}")
    print(f"leaderboard: {_results_dir(args) / summary.suite / 'leaderboard.md'}")
    return 0 if summary.ok else 1


def cmd_report(args: argparse.Namespace) -> int:
    from harness.reports.report import build_report

    _reach_artifacts(args)
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

    _reach_artifacts(args)
    outcome = build_tables(args.suites or None, args.tracking_uri, _results_dir(args))
    for line in outcome.summary:
        print(line)
    print(f"tables: {_results_dir(args) / 'tables'} (index.md; each table as .md, .csv, .tex)")
    return 0


PAPER_SUITE_PREFIX = "paper-"


def paper_suites() -> list[str]:
    """The papers `ltbench reproduce` knows: one built-in `paper-<name>` suite each."""
    from harness.suite import builtin_suites

    return [s.removeprefix(PAPER_SUITE_PREFIX) for s in builtin_suites() if s.startswith(PAPER_SUITE_PREFIX)]


def cmd_reproduce(args: argparse.Namespace) -> int:
    """`run` on the paper's suite, then `tables` on that suite's runs: one command per published table."""
    from harness.errors import unknown_choice

    paper = args.paper.removeprefix(PAPER_SUITE_PREFIX)
    if paper not in paper_suites():
        raise unknown_choice("paper", args.paper, paper_suites())
    args.suite = PAPER_SUITE_PREFIX + paper
    status = cmd_run(args)
    if args.dry_run:
        return status
    args.suites = [args.suite]
    cmd_tables(args)
    return status


def cmd_claims(args: argparse.Namespace) -> int:
    from harness.reports.report import build_claims

    _reach_artifacts(args)
    outcome = build_claims(args.suites or None, args.tracking_uri, _results_dir(args))
    print(outcome.text, end="")
    print(f"written: {outcome.path}")
    return 1 if args.strict and outcome.any_fails else 0


def cmd_describe(args: argparse.Namespace) -> int:
    from harness.data import DATASETS, DataOptions

    spec = DATASETS.get(args.dataset)
    options = DataOptions(root=args.root, max_per_class=args.max_per_class, val_per_class=args.val_per_class)
    info = spec.describe(args.imbalance_ratio, options).as_dict()
    if args.json:
        print(json.dumps(info))
        return 0
    ratio = "native" if args.imbalance_ratio is None else f"{args.imbalance_ratio:g}"
    print(f"{spec.name}, imbalance ratio {ratio}: {spec.num_classes} classes")
    print("per-class profile (class order): " + " ".join(str(n) for n in info["class_counts"]))
    print(f"total: {info['num_profile']} images; shot buckets are computed on this profile")
    b = info["buckets"]
    print(f"classes per bucket: many (>100) {b['many']}, medium (20-100) {b['medium']}, few (<20) {b['few']}")
    print(
        f"validation: {info['val_per_class']} images per class ({info['num_val']}), drawn from source training "
        "images outside the LT subset"
    )
    for c, t in info["val_from_lt"].items():
        print(f"  class {c} has too few spare images: {t} of its validation images come from its LT images")
    if info["train_counts"] != info["class_counts"]:
        print("per-class training counts (what the model trains on): " + " ".join(map(str, info["train_counts"])))
    print(f"training images: {info['num_train']}; test images: {info['num_test']}")
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    from harness.data.fetch import fetch

    print(f"{args.dataset}: files in {fetch(args.dataset, args.root)}")
    return 0


def cmd_methods(args: argparse.Namespace) -> int:
    from harness.method_catalogue import method_catalogue

    for method in method_catalogue():
        print(f"{method.name:<12} {method.description}")
        print(f"{'':<13}[{method.kind}; sampler: {method.sampler}]")
        for p in method.params:
            setting = f"{p.name}: {p.type} = {p.default}"
            print(f"{'':<13}{setting:<34} {p.help}".rstrip())
    return 0


def cmd_suites(args: argparse.Namespace) -> int:
    from harness.suite import build_suite, builtin_suites

    for name in builtin_suites():
        suite = build_suite(name)
        print(f"{name:<14} {len(suite):>4} trials  {suite.description}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from harness.bench import MakespanOptions, format_table, run_bench, run_makespan_only, write_bench

    log = lambda message: print(message, file=sys.stderr)  # noqa: E731  (progress apart from the table)
    path = _results_dir(args) / "bench.json"
    makespan = MakespanOptions(args.ray_gpus, args.packing, args.time_scale, args.max_trials, path)
    if args.makespan:
        result = run_makespan_only(makespan, path, log)
    else:
        result = run_bench(args.device, args.quick, args.data_root, args.threads, log, makespan)
    path = write_bench(result, path)
    print(format_table(result))
    print(f"written: {path}")
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    from mlflow.tracking import MlflowClient

    from harness.tracking import check_reachable, default_tracking_uri
    from harness.ui import mark_model_training, runs_url, suite_experiments

    _reach_artifacts(args)
    uri = args.tracking_uri or default_tracking_uri(_results_dir(args))
    remote = uri.startswith(("http://", "https://"))
    if not remote and uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///") :]).is_file():
        raise LtbenchError(f"no results at {uri}; run a suite first (ltbench run quick) or pass --tracking-uri")
    check_reachable(uri)
    client = MlflowClient(tracking_uri=uri)
    for name, experiment_id in suite_experiments(client, args.suite):
        mark_model_training(client, experiment_id)
        print(f"{name}: {runs_url(args.host, args.port, experiment_id, base=uri if remote else None)}")
    if remote:
        print(f"{uri} serves its own UI: open the address above")
        return 0
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri]
    command += ["--host", args.host, "--port", str(args.port)]
    print("starting: " + " ".join(command), flush=True)
    os.execv(sys.executable, command)
    return 0  # not reached


def build_parser() -> argparse.ArgumentParser:
    """Every argument says what it does and its default (a test walks the parser to check)."""
    from harness import __version__
    from harness.ui import DEFAULT_HOST, DEFAULT_PORT

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
            "--dry-run",
            action="store_true",
            help="print the plan (shared stages and their users) and any warnings, run nothing (default: off)",
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
    reproduce.add_argument("paper", help="kang2020, menon2021, cao2019, alshammari2022, lort or zhang")
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "tracking_uri", None):
            from harness.tracking import check_tracking_uri

            check_tracking_uri(args.tracking_uri)
        return args.func(args)
    except TrackingUnavailable as e:  # trials ran and kept their results; only the tracking server is missing
        print(f"ltbench: error: {e}", file=sys.stderr)
        return TRACKING_UNAVAILABLE_EXIT
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
