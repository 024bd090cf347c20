"""How the trials of one Tune run ended, and the interrupt that ends a run early."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TrialOutcome:
    """How one trial of the run ended (`RunSummary` in `run_suite` sums up the whole `ltbench run`)."""

    key: str
    label: str
    status: str  # FINISHED | FAILED
    reason: str = ""


class Interrupted(KeyboardInterrupt):
    """The user stopped the run (SIGINT): finished trials are kept, unfinished ones resume on a rerun."""


@dataclass
class TrialOutcomes:
    """Every trial's outcome in one Tune run, in the order they ended."""

    outcomes: list[TrialOutcome] = field(default_factory=list)

    @property
    def failed(self) -> list[TrialOutcome]:
        return [o for o in self.outcomes if o.status != "FINISHED"]
