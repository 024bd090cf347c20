"""What each `ltbench` command does, one `cmd_*` function a command; `harness.cli.parser` maps arguments to them."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from harness.core.errors import LtbenchError, unknown_choice
from harness.core.text import plural
from harness.core.trial import ratio_label
from harness.core.validation import is_finite_number

if TYPE_CHECKING:
    from harness.records.storage import Storage

RESULTS_ENV = "LTBENCH_RESULTS"
# Exit codes: 0 all trials finished, 1 some trial failed, 2 bad input, 3 the tracking server went away
# (results kept on disk; rerun to log them), 130 interrupted.
TRACKING_UNAVAILABLE_EXIT = 3


def _results_dir(args: argparse.Namespace) -> Path:
    return Path(args.results_dir or os.environ.get(RESULTS_ENV) or "results")


def _storage(args: argparse.Namespace) -> Storage | None:
    """The trial store given (--storage, else $LTBENCH_STORAGE), opened once here; None: `<results dir>/trials`."""
    from harness.records.storage import STORAGE_ENV, Storage

    given = getattr(args, "storage", None) or os.environ.get(STORAGE_ENV) or None
    return None if given is None else Storage.open(given)


def _reach_artifacts(args: argparse.Namespace) -> None:
    """Commands that read MLflow artifacts reach a remote store's S3-compatible endpoint through it."""
    from harness.records.tracking_uri import use_artifact_store

    if (storage := _storage(args)) is not None:
        use_artifact_store(storage)


def cmd_run(args: argparse.Namespace) -> int:
    from harness.execution.run_suite import dry_run, run_suite

    if args.dry_run:
        print(dry_run(args.suite, args.set, _results_dir(args), _storage(args), args.verbose, args.group_size))
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
        group_size=args.group_size,
    )
    print(summary.leaderboard_md)
    print(
        f"suite {summary.suite}: {plural(summary.total, 'trial')}, {summary.skipped} already finished, "
        f"{summary.ran} run, {len(summary.failed)} failed, {summary.missing} not finished; "
        f"{summary.seconds:.0f} s wall"
    )
    for label, reason in summary.failed:
        print(f"  FAILED {label}: {reason}")
    for note in summary.notes:
        print(f"  note: {note}")
    print(f"leaderboard: {_results_dir(args) / summary.suite / 'leaderboard.md'}")
    print(next_commands(args, summary.suite))
    return 0 if summary.ok else 1


def next_commands(args: argparse.Namespace, suite: str) -> str:
    """What to type after a run: its report (plots) and its runs in the MLflow UI, with the same results
    dir, tracking URI and store options as the run."""
    import shlex

    where = []
    for option, value in (("--results-dir", args.results_dir), ("--tracking-uri", args.tracking_uri)):
        where += [option, value] if value else []
    where += ["--storage", args.storage] if getattr(args, "storage", None) else []
    sets = [part for value in getattr(args, "set", None) or [] for part in ("--set", value)]
    report = " ".join(shlex.quote(str(part)) for part in [suite, *sets, *where])
    ui = " ".join(shlex.quote(str(part)) for part in [suite, *where])
    return f"next: ltbench report {report}  (plots and tables);  ltbench ui {ui}  (every run in MLflow's UI)"


def cmd_report(args: argparse.Namespace) -> int:
    from harness.reports.report import build_report

    _reach_artifacts(args)
    outcome = build_report(args.suite, args.set, args.tracking_uri, _results_dir(args), plots=not args.no_plots)
    print(outcome.leaderboard_md)
    for line in outcome.reported:
        print(f"reported: {line}")
    print(f"leaderboard: {outcome.out_dir / 'leaderboard.md'} (.csv, .tex; trials.csv lists every trial)")
    if outcome.plots:
        print(f"plots: {plural(len(outcome.plots), 'file')} in {outcome.out_dir / 'plots'}")
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
    from harness.experiment.suite_files import builtin_suites

    return [s.removeprefix(PAPER_SUITE_PREFIX) for s in builtin_suites() if s.startswith(PAPER_SUITE_PREFIX)]


def cmd_reproduce(args: argparse.Namespace) -> int:
    """`run` on the paper's suite, then `tables` on that suite's runs: one command per published table."""
    paper = args.paper.removeprefix(PAPER_SUITE_PREFIX)
    if paper not in paper_suites():
        raise unknown_choice("paper", args.paper, paper_suites())
    args.suite = PAPER_SUITE_PREFIX + paper
    status = cmd_run(args)
    if args.dry_run:
        return status
    from harness.reports.report import NothingToReport

    args.suites = [args.suite]
    try:
        cmd_tables(args)
    except NothingToReport as e:  # every trial failed: the run's own status says so, not "bad input"
        print(f"ltbench: no tables: {e}", file=sys.stderr)
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
    ratio = args.imbalance_ratio
    if ratio is not None and not (is_finite_number(ratio) and ratio >= 1):
        raise LtbenchError(f"--imbalance-ratio must be a finite number >= 1 (n_max / n_min), got {ratio}; e.g. 100")
    for option, value in (("--max-per-class", args.max_per_class), ("--val-per-class", args.val_per_class)):
        if value is not None and value < 1:
            raise LtbenchError(f"{option} must be an integer >= 1, got {value} (leave it out for the default)")
    options = DataOptions(root=args.root, max_per_class=args.max_per_class, val_per_class=args.val_per_class)
    # a folder given is checked and described as it is; without one, the dataset's nominal sizes are described,
    # saying whether its files are where ltbench looks for them (to train on)
    source_counts = spec.check_available(options) if args.root else None
    info = spec.describe(args.imbalance_ratio, options, source_counts).as_dict()
    info["files_missing"] = None
    if not args.root:
        try:
            spec.check_available(options)
        except LtbenchError as e:
            info["files_missing"] = str(e)
    if args.json:
        print(json.dumps(info))
        return 0
    ratio = ratio_label(args.imbalance_ratio, "value")
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
    if info["files_missing"]:
        print(f"warning: the counts above are nominal, the files are not here: {info['files_missing']}")
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    from harness.data.fetch import fetch

    print(f"{args.dataset}: files in {fetch(args.dataset, args.root)}")
    return 0


def cmd_methods(args: argparse.Namespace) -> int:
    from harness.core.text import text_columns
    from harness.plugins.catalogue import method_catalogue

    methods = method_catalogue()
    indent = " " * (max(len(m.name) for m in methods) + 2)  # everything under a method starts past its name
    for method in methods:
        print(f"{method.name:<{len(indent) - 2}}  {method.description}")
        print(f"{indent}[{method.kind}; sampler: {method.sampler}]")
        settings = [[f"{p.name}: {p.type} = {p.default}", p.help] for p in method.params]
        for line in text_columns(settings, indent=indent):
            print(line)
    return 0


def cmd_suites(args: argparse.Namespace) -> int:
    """Read from the YAML files alone: building a suite imports every method (seconds), listing needs none."""
    from harness.core.text import plural, text_columns
    from harness.experiment.suite_files import builtin_suites, grid_size, load_suite_file

    rows = []
    for name in builtin_suites():
        raw = load_suite_file(name)
        rows.append([name, plural(grid_size(raw), "trial"), str(raw.get("description") or "")])
    for line in text_columns(rows, "lrl"):
        print(line)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from harness.bench.run import (
        MakespanOptions,
        format_table,
        run_bench,
        run_grouping_only,
        run_makespan_only,
        write_bench,
    )

    log = lambda message: print(message, file=sys.stderr)  # noqa: E731  (progress apart from the table)
    if args.compile and not args.grouping:
        raise LtbenchError("--compile measures section (f) only: add --grouping (ltbench bench --grouping --compile)")
    if args.load is not None:
        return _bench_load(args, log)
    path = _results_dir(args) / "bench.json"
    makespan = MakespanOptions(args.ray_gpus, args.packing, args.time_scale, args.max_trials, path)
    if args.makespan:
        result = run_makespan_only(makespan, path, log)
    elif args.grouping:
        result = run_grouping_only(args.device, args.quick, args.data_root, args.threads, path, log, args.compile)
    else:
        result = run_bench(args.device, args.quick, args.data_root, args.threads, log, makespan)
    path = write_bench(result, path)
    print(format_table(result))
    print(f"written: {path}")
    return 0


def _bench_load(args: argparse.Namespace, log: Callable[[str], None]) -> int:
    from harness.bench.load import LoadOptions, format_load, measure_load, run_environment
    from harness.bench.run import write_bench

    options = LoadOptions(args.load, args.load_epochs, args.load_epoch_seconds, args.load_concurrency, args.data_root)
    options.check()
    figures = measure_load(options, log)
    path = write_bench({"load": figures.as_dict(), "machine": run_environment()}, _results_dir(args) / "load.json")
    print(format_load(figures))
    print(f"written: {path}")
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    from mlflow.tracking import MlflowClient

    from harness.records.relocation import relocate_artifacts
    from harness.records.tracking_uri import check_reachable, default_tracking_uri
    from harness.reports.ui import check_can_listen, mark_model_training, runs_url, suite_experiments

    _reach_artifacts(args)
    uri = args.tracking_uri or default_tracking_uri(_results_dir(args))
    remote = uri.startswith(("http://", "https://"))
    if not remote:
        check_can_listen(args.host, args.port)
    if not remote and uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///") :]).is_file():
        raise LtbenchError(f"no results at {uri}; run a suite first (ltbench run quick) or pass --tracking-uri")
    if uri == default_tracking_uri(_results_dir(args)):
        relocate_artifacts(_results_dir(args))  # a moved or copied results dir shows its own artifacts
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
