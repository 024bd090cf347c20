"""One progress display for a whole `ltbench run`: trials done / total, elapsed time, ETA.

On a terminal the display is a bar redrawn in place (once a second, and at every event); in a log or CI
(the stream is not a TTY) it is a plain `progress:` line every `every` seconds, so a log stays readable
and never fills with carriage returns. Every other line of the run (epochs, finished trials) goes through
`SuiteProgress.line` so that it is printed above the bar instead of through it.

The ETA weighs each trial by the work it computes (`harness.execution.costs.image_equivalents`: a stage-two
trial on a frozen backbone computes a small fraction of a backbone's work), spread evenly over the epochs the
trial trains, and projects the work left at the pace measured so far (wall seconds per unit of estimated
work, which folds in how many trials run at once). Backbones and decoupled trials run interleaved, so there
is one count and one pace.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

from harness.core.trial import TrialConfig

BAR_WIDTH = 24
TICK_SECONDS = 1.0  # how often a terminal bar is redrawn when nothing happens (the elapsed time moves)


def format_duration(seconds: float) -> str:
    """`42s`, `3m05s`, `2h07m`: short enough for a status line, precise enough to plan a coffee."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class SuiteProgress:
    """Counts the trials and epochs of one suite run and shows them with an ETA.

    `epochs` maps each trial key to the epochs it trains (a trial that trains none counts as one);
    `weights` maps it to its estimated cost (default: its epochs). Call `start` when trials begin, `epoch`
    when a trial reports one, `trial_done` / `trial_failed` when a trial ends, `line` for any message, and
    `close` at the end. Thread-safe: a terminal bar is redrawn by a ticker thread.
    """

    def __init__(
        self,
        epochs: dict[str, int],
        weights: dict[str, float] | None = None,
        stream: TextIO | None = None,
        live: bool | None = None,
        every: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.live = bool(getattr(self.stream, "isatty", lambda: False)()) if live is None else live
        self.every = every
        self.clock = clock
        self.units = {key: max(1, int(n)) for key, n in epochs.items()}
        self.weights = {key: float((weights or {}).get(key, self.units[key])) for key in self.units}
        self.done_units: dict[str, int] = {}
        self.finished = 0
        self.failed = 0
        self.started = clock()
        self.pace: float | None = None  # wall seconds per unit of estimated work
        self._last_plain = self.started
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        if self.live:
            self._ticker = threading.Thread(target=self._tick, name="ltbench-progress", daemon=True)
            self._ticker.start()

    def __getstate__(self) -> dict:
        """Tune pickles its callbacks (and this with them) into its experiment state; the lock, the ticker
        and the stream stay behind, and a copy revived from that state prints to stdout without a ticker."""
        state = dict(self.__dict__)
        for name in ("stream", "_lock", "_stop", "_ticker"):
            state.pop(name)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.stream, self.live = sys.stdout, False
        self._lock, self._stop, self._ticker = threading.RLock(), threading.Event(), None

    # -- counting -----------------------------------------------------------------------------------
    @property
    def total(self) -> int:
        return len(self.units)

    def planned(self, key: str) -> int:
        """Epochs the trial was planned to train (at least 1)."""
        return self.units.get(key, 1)

    def start(self) -> None:
        """Trials begin: the clock and the pace start from here."""
        with self._lock:
            self.started = self.clock()
            if not self.live:
                self._print_plain(force=True)

    def epoch(self, key: str, epoch: int) -> None:
        """A trial reported epoch `epoch` (1-based; a resumed trial starts past 1, its earlier epochs done)."""
        with self._lock:
            self.done_units[key] = min(max(self.done_units.get(key, 0), int(epoch)), self.planned(key))
            self._measure_pace()
            self._refresh()

    def trial_done(self, key: str, failed: bool = False) -> None:
        with self._lock:
            self.done_units[key] = self.planned(key)
            self.finished += 1
            self.failed += int(failed)
            self._measure_pace()
            self._refresh()

    def trial_failed(self, key: str, label: str, reason: str) -> None:
        """Count a failed trial and say why, whatever the verbosity: a failure is never silent."""
        with self._lock:
            self.trial_done(key, failed=True)
            self.line(f"[{self.finished}/{self.total}] {label} FAILED: {reason}")

    def _work_done(self) -> float:
        return sum(self.weights.get(k, 1.0) * n / self.planned(k) for k, n in self.done_units.items())

    def _measure_pace(self) -> None:
        work = self._work_done()
        if work > 0:
            self.pace = (self.clock() - self.started) / work

    def eta(self) -> float | None:
        """Seconds left, or None before the pace is known."""
        if self.pace is None:
            return None
        return max(0.0, sum(self.weights.values()) - self._work_done()) * self.pace

    def status(self) -> str:
        """`12/44 trials (1 failed) | 3m12s elapsed | ETA 2m05s`."""
        with self._lock:
            parts = [f"{self.finished}/{self.total} trials" + (f" ({self.failed} failed)" if self.failed else "")]
            parts.append(f"{format_duration(self.clock() - self.started)} elapsed")
            eta = self.eta()
            parts.append("ETA " + ("--" if eta is None else format_duration(eta)))
            return " | ".join(parts)

    # -- printing -----------------------------------------------------------------------------------
    def line(self, text: str) -> None:
        """Print one message line (above the bar on a terminal)."""
        with self._lock:
            if self.live:
                self.stream.write("\r\x1b[2K" + text + "\n")
                self._draw_bar()
            else:
                self.stream.write(text + "\n")
                self._print_plain()
            self.stream.flush()

    def bar(self) -> str:
        total = sum(self.weights.values())
        filled = round(BAR_WIDTH * self._work_done() / total) if total else BAR_WIDTH
        return "[" + "#" * filled + "." * (BAR_WIDTH - filled) + "] " + self.status()

    def _draw_bar(self) -> None:
        self.stream.write("\r\x1b[2K" + self.bar())
        self.stream.flush()

    def _print_plain(self, force: bool = False) -> None:
        now = self.clock()
        if force or now - self._last_plain >= self.every:
            self._last_plain = now
            self.stream.write("progress: " + self.status() + "\n")
            self.stream.flush()

    def _refresh(self) -> None:
        if self.live:
            self._draw_bar()
        else:
            self._print_plain()

    def _tick(self) -> None:
        while not self._stop.wait(TICK_SECONDS):
            with self._lock:
                self._draw_bar()

    def close(self) -> None:
        """Stop the ticker and leave the final status on its own line."""
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        with self._lock:
            if self.live:
                self._draw_bar()
                self.stream.write("\n")
            else:
                self._print_plain(force=True)
            self.stream.flush()


def epoch_line(cfg: TrialConfig, row: dict[str, Any], planned_epochs: int) -> str:
    """One epoch of one trial; `planned_epochs` is what this trial trains (a stage-two trial's own epochs,
    not its backbone recipe's). Validation only: the protocol chooses on validation, and the test accuracy
    belongs to the finished trial's line (and to MLflow), not to the view a user watches while choosing."""
    epoch = int(row["epoch"])
    of = f"/{planned_epochs}" if epoch <= planned_epochs else ""
    line = f"  {cfg.label()} epoch {epoch}{of} loss {row['train_loss']:.4f}"
    if "val_mean_class_acc" in row:
        line += f" | val mean-class {100 * row['val_mean_class_acc']:.2f}"
    return line


def finished_line(progress: SuiteProgress, cfg: TrialConfig, result: dict[str, Any] | None) -> str:
    line = f"[{progress.finished}/{progress.total}] {cfg.label()} finished"
    if result and "test_top1" in result:
        line += f": test top-1 {100 * result['test_top1']:.2f}"
        if "test_mean_class_acc" in result:
            line += f", mean-class {100 * result['test_mean_class_acc']:.2f}"
    return line + f" ({cfg.key})"
