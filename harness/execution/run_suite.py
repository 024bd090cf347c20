"""`ltbench run`: suite -> trials (skipping finished ones) -> Ray Tune -> MLflow -> leaderboard."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness.core.errors import LtbenchError
from harness.core.text import plural
from harness.core.trial import DEFAULT_MAX_RETRIES, TrialConfig
from harness.data import DATASETS, DataOptions
from harness.execution.estimate import cost_lines
from harness.execution.grouping import group_lines, resolve_group_size
from harness.execution.outcomes import Interrupted
from harness.execution.plan_summary import every_trial, extra_runs, finished_summary, plan_table
from harness.execution.ray_cluster import check_resources, ray_session, worker_niceness
from harness.execution.termination import sigterm_as_interrupt
from harness.execution.tune_driver import run_with_tune, trials_progress
from harness.execution.worker import Trainable, train_trial
from harness.experiment.coverage import empty_bucket_warnings
from harness.experiment.plan import epoch_budget, make_plan
from harness.experiment.suite import Suite, build_suite, parse_group_size
from harness.records.artifacts import RESULT_FILE
from harness.records.disk_space import DiskFull, disk_full_message, is_disk_full, largest_trial_bytes
from harness.records.lease import check_lease_client
from harness.records.provenance import git_commit
from harness.records.results_dir import check_results_dir, exclusive_run
from harness.records.storage import Storage
from harness.records.suite_configurations import remember_configuration
from harness.records.tracker import Tracker
from harness.records.tracking_uri import check_reachable, check_tracking_uri, default_tracking_uri, retry_seconds
from harness.reports.leaderboard import write_leaderboard
from harness.reports.runs import runs_frame


@dataclass
class RunSummary:
    suite: str
    total: int
    skipped: int
    ran: int
    failed: list[tuple[str, str]]
    missing: int
    leaderboard_md: str
    seconds: float
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed and self.missing == 0


def data_problems(trials: list[TrialConfig]) -> list[str]:
    """What stops the trials' data from loading, one line each: a dataset whose files are missing (on a cluster,
    the driver's view) or whose profile cannot give the validation split asked for. Empty when all is well."""
    problems = []
    sources: dict[tuple[str, DataOptions], list[int] | None] = {}  # what each dataset's files hold, read once
    profiles = set()
    for trial in trials:
        options = DataOptions(**trial.data)  # neither the files nor the split's feasibility depend on data_seed
        spec = DATASETS.get(trial.dataset)
        try:
            if (trial.dataset, options) not in sources:
                sources[(trial.dataset, options)] = None
                sources[(trial.dataset, options)] = spec.check_available(options)
            if (trial.dataset, trial.imbalance_ratio, options) not in profiles:
                profiles.add((trial.dataset, trial.imbalance_ratio, options))
                spec.check_validation(trial.imbalance_ratio, options, sources[(trial.dataset, options)])
        except LtbenchError as e:
            problems.append(str(e))
    return list(dict.fromkeys(problems))


def check_data(trials: list[TrialConfig]) -> None:
    """Fail before any trial starts when the data cannot load (`data_problems`), naming the first problem."""
    problems = data_problems(trials)
    if problems:
        raise LtbenchError(problems[0])


def open_tracker(suite: Suite, results_dir: Path, tracking_uri: str | None, storage: Storage | None = None) -> Tracker:
    results_dir.mkdir(parents=True, exist_ok=True)
    uri = tracking_uri or default_tracking_uri(results_dir)
    return Tracker(uri, suite.name, results_dir, storage, overrides=suite.overrides)


def check_tracking(tracking_uri: str | None, results_dir: Path) -> None:
    """A given tracking URI is well formed and its server answers; the default SQLite store, if there, is one
    (checks that write nothing)."""
    if tracking_uri is not None:
        check_tracking_uri(tracking_uri)
        check_reachable(tracking_uri)
    else:
        check_tracking_uri(default_tracking_uri(results_dir))


def run_suite(
    name: str,
    overrides: list[str] | None = None,
    address: str | None = None,
    tracking_uri: str | None = None,
    results_dir: Path = Path("results"),
    verbose: int = 1,
    max_retries: int = DEFAULT_MAX_RETRIES,
    storage: Storage | None = None,
    group_size: int | str | None = None,
    trainable: Trainable = train_trial,
) -> RunSummary:
    """Run every unfinished trial of the suite in one Tune run (each decoupled trial as soon as its shared
    backbone has finished; a trial whose worker dies retried up to `max_retries` times); then rebuild the
    leaderboard.

    Trial files go to `storage` (default: `<results>/trials`). Every check that can
    fail (the suite, the data, the results dir, the trial store, the tracking URI, the Ray address and
    resources) runs before anything is written; the results dir is locked for this driver alone. Up to
    `group_size` compatible trials train in one worker process (default: the suite's `group_size`).
    `trainable` is what each Ray worker runs: the trainer, or the load bench's simulated trial.
    """
    started = time.perf_counter()
    if max_retries < 0:
        raise LtbenchError(f"--max-retries must be 0 or more, got {max_retries}")
    if group_size is not None:
        group_size = parse_group_size(group_size, "--group-size")
    suite = build_suite(name, overrides)
    if group_size is not None:
        suite.group_size = group_size
    check_data(suite.trials)
    check_results_dir(results_dir)
    store = Storage.open(results_dir / "trials") if storage is None else storage
    store.check()
    check_lease_client(store)
    check_tracking(tracking_uri, results_dir)
    if address is None:
        worker_niceness()  # a bad $LTBENCH_WORKER_NICENESS stops here, before the results dir is locked
    with exclusive_run(results_dir), ray_session(address), sigterm_as_interrupt():
        check_resources(suite.trials)
        for warning in empty_bucket_warnings(suite.trials):  # once every check has passed
            print(warning, file=sys.stderr, flush=True)
        try:
            tracker = open_tracker(suite, results_dir, tracking_uri, store)
            remember_configuration(results_dir, suite.name, suite.overrides, suite.trials)
            return _run_unfinished(suite, tracker, results_dir, verbose, started, store, max_retries, trainable)
        except Exception as e:  # a full disk surfaces from SQLite, Tune or a write of ours: one line, not 38 tracebacks
            if not is_disk_full(e) or isinstance(e, LtbenchError):
                raise
            need = largest_trial_bytes(store.local_root) if store.is_local else None
            raise DiskFull(disk_full_message(results_dir, need)) from None


def _run_unfinished(
    suite: Suite,
    tracker: Tracker,
    results_dir: Path,
    verbose: int,
    started: float,
    storage: Storage,
    max_retries: int = DEFAULT_MAX_RETRIES,
    trainable: Trainable = train_trial,
) -> RunSummary:
    plan = make_plan(suite.trials)
    # Trials whose result reached the store while MLflow could not hear of it (a server that went away, a
    # killed driver) are logged from their own records now, not trained again.
    stored = storage.keys_with(RESULT_FILE)
    finished = tracker.finished_runs()
    tracker.reconcile(
        [(t, storage.trial(t.key)) for t in plan.trials if t.key in stored and t.key not in finished],
        [],
    )
    finished = tracker.finished_runs()
    notes = _other_commit_notes(suite, finished)
    # a backbone counts as done only if its files are in the store: stage two loads them
    todo = [t for t in plan.end_to_end if t.key not in finished or t.key not in stored]
    todo += [t for t in plan.decoupled if t.key not in finished]

    progress = trials_progress(todo)
    group_size, why = resolve_group_size(suite.group_size, todo, results_dir / "bench.json")
    if verbose and group_size > 1:
        print(f"grouping: {group_size} trials per worker process ({why})", flush=True)
    progress.start()
    try:
        outcome = run_with_tune(
            todo,
            plan.backbone_of,
            tracker,
            storage,
            results_dir,
            progress,
            verbose,
            max_retries,
            group_size=group_size,
            trainable=trainable,
        )
    except Interrupted:
        if tracker.down_since is None:
            write_leaderboard(runs_frame(tracker), suite.trials, results_dir / suite.name, f"Leaderboard: {suite.name}")
        raise
    finally:
        progress.close()
    if tracker.had_outage:  # make MLflow whole from the trials' records once the server answers again
        tracker.wait_until_answering(retry_seconds())
        by_key = {t.key: t for t in plan.trials}
        done = [o.key for o in outcome.outcomes if o.status == "FINISHED"]
        tracker.reconcile(
            [(by_key[k], storage.trial(k)) for k in done], [(by_key[o.key], o.reason) for o in outcome.failed]
        )
    failures = [(o.label, o.reason) for o in outcome.failed]

    runs = runs_frame(tracker)
    _, status, text = write_leaderboard(runs, suite.trials, results_dir / suite.name, f"Leaderboard: {suite.name}")
    ran = {t.key for t in todo}
    return RunSummary(
        suite=suite.name,
        total=len(suite.trials),
        skipped=sum(t.key not in ran for t in suite.trials),
        ran=len(ran),
        failed=failures,
        missing=int((status.status != "FINISHED").sum()),
        leaderboard_md=text,
        seconds=time.perf_counter() - started,
        notes=notes,
    )


def _other_commit_notes(suite: Suite, finished: dict[str, str]) -> list[str]:
    """Say when finished trials that this run reuses were trained by another harness commit."""
    now = git_commit()
    others = sorted({finished[t.key] for t in suite.trials if t.key in finished and finished[t.key] != now})
    if not others:
        return []
    count = sum(1 for t in suite.trials if t.key in finished and finished[t.key] != now)
    return [
        f"{count} finished trials were trained by another harness commit ({', '.join(c[:12] for c in others)}; "
        f"this is {now[:12]}) and are reused as they are; delete their runs and trial directories to retrain them"
    ]


def dry_run(
    name: str,
    overrides: list[str] | None = None,
    results_dir: Path = Path("results"),
    storage: Storage | None = None,
    verbose: bool = False,
    group_size: int | str | None = None,
) -> str:
    """What a run would do, without writing anything: the plan as a table (every trial with `verbose`), how many
    trials are already finished in the store, the epochs that stage sharing saves, the runs the suite's table
    also needs, what would stop it (missing data files) or leave buckets empty; then what it would cost and how
    its trials would be grouped (`cost_and_grouping`)."""
    suite = build_suite(name, overrides)
    plan = make_plan(suite.trials)
    store = storage or Storage.open(results_dir / "trials")
    finished = store.keys_with(RESULT_FILE)
    budget = epoch_budget(suite.trials)
    text = "\n".join(
        [
            f"suite {suite.name}: {plural(len(suite.trials), 'trial')}",
            *plan_table(plan, suite.trials, finished),
            *finished_summary(plan, finished, store.location),
            f"backbone epochs: {budget.shared_epochs} with stage sharing, {budget.retrain_epochs} if every "
            f"decoupled method retrained its backbone ({budget.saving:.2f}x); plus {budget.stage2_epochs} "
            "head-only stage-two epochs either way",
            *extra_runs(suite),
            *(every_trial(plan) if verbose else []),
            *(f"warning: {problem}" for problem in data_problems(suite.trials)),
            *empty_bucket_warnings(suite.trials),
        ]
    )
    return "\n".join([text, *cost_and_grouping(suite, results_dir, group_size)])


def cost_and_grouping(suite: Suite, results_dir: Path, group_size: int | str | None = None) -> list[str]:
    """The dry run's estimate of GPU-hours and wall time (`harness.execution.estimate`) and its grouping of
    the suite's trials into worker processes, both from `<results>/bench.json` where it has figures."""
    choice = suite.group_size if group_size is None else parse_group_size(group_size, "--group-size")
    plan = make_plan(suite.trials)
    bench_json = results_dir / "bench.json"
    size, why = resolve_group_size(choice, plan.trials, bench_json)
    return [
        *cost_lines(plan.trials, plan.backbone_of, bench_json),
        *group_lines(plan.trials, plan.backbone_of, size, why),
    ]
