"""The per-trial lease in a shared store: one holder at a time, a waiter that says so, a stale lease taken
over, and a holder that learns it lost its lease; on a local store, on S3 (moto) and on Google Cloud Storage
(fake-gcs-server)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from harness.core.errors import LtbenchError
from harness.records import lease as lease_module
from harness.records.lease import LEASE_FILE, LeaseLost, TrialLease, check_lease_client, leased
from harness.records.storage import Storage
from tests.store_servers import GcsServer, S3Server


@pytest.fixture(params=["local", "s3", "gcs"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "local":
        return Storage.open(tmp_path / "store")
    server: S3Server | GcsServer = request.getfixturevalue(request.param)
    return server.storage(f"lease-{time.monotonic_ns()}")


def test_a_second_holder_waits_says_who_holds_and_takes_the_lease_once_released(store: Storage) -> None:
    files = store.trial("trial-a")
    first = TrialLease(files, "driver one", renew_s=0.2)
    first.acquire()
    said: list[str] = []
    second = TrialLease(files, "driver two", renew_s=0.2)
    waiter = threading.Thread(target=second.acquire, kwargs={"say": said.append, "poll_s": 0.05})
    waiter.start()
    time.sleep(0.6)
    assert waiter.is_alive() and second.version is None  # held: the second waits
    assert said == ["trial trial-a is being trained by driver one (its lease in the shared store); waiting for it "
                    "to finish"]  # fmt: skip
    first.renew()  # a renewing holder keeps it
    time.sleep(0.3)
    assert waiter.is_alive()
    first.release()
    waiter.join(timeout=10)
    assert not waiter.is_alive() and second.version is not None
    second.release()
    assert not files.exists(LEASE_FILE)


def test_a_stale_lease_is_taken_over_and_its_old_holder_stops(store: Storage) -> None:
    files = store.trial("trial-b")
    dead = TrialLease(files, "a driver that died", renew_s=0.05)
    dead.acquire()  # and never renews
    said: list[str] = []
    taker = TrialLease(files, "driver two", renew_s=0.05)  # stale after 6 x 0.05 s unchanged
    started = time.monotonic()
    taker.acquire(say=said.append, poll_s=0.02)
    assert time.monotonic() - started >= taker.stale_s
    assert said[-1] == "trial trial-b: took over a stale lease of a driver that died"
    dead.renew()  # the old holder comes back: the lease is no longer its own
    with pytest.raises(LeaseLost, match="its lease was taken over by another driver"):
        dead.check()
    taker.renew()
    taker.check()  # the new holder keeps it


def test_a_lease_of_this_results_dir_is_stale_after_two_of_its_renewals_and_another_dirs_after_six(
    store: Storage,
) -> None:
    files = store.trial("trial-e")
    dead = TrialLease(files, "a worker that died", renew_s=0.2, home="host:/results")
    dead.acquire()  # and never renews
    elsewhere = TrialLease(files, "another results dir", renew_s=1.0, home="host:/other")  # stale after 6 s
    waiter = threading.Thread(target=elsewhere.acquire, kwargs={"say": lambda line: None, "poll_s": 0.02})
    said: list[str] = []
    retry = TrialLease(files, "its retry", renew_s=0.2, home="host:/results")
    waiter.start()
    started = time.monotonic()
    retry.acquire(say=said.append, poll_s=0.02)
    waited = time.monotonic() - started
    assert 2 * 0.2 <= waited < 5 and retry.version is not None  # two of the dead holder's periods, not six of ours
    assert said == [
        "trial trial-e: waiting up to 0.4 s for the lease of an earlier attempt from this results dir to go stale",
        "trial trial-e: took over a stale lease of an earlier attempt from this results dir",
    ]
    assert waiter.is_alive() and elsewhere.version is None  # the other results dir's driver still waits
    dead.renew()
    with pytest.raises(LeaseLost):
        dead.check()
    retry.release()
    waiter.join(timeout=10)
    assert elsewhere.version is not None  # and goes on once the lease is released
    elsewhere.release()


def test_an_attempt_of_this_results_dir_that_still_renews_is_waited_for(store: Storage) -> None:
    """A worker Ray declared lost while it still runs (cut off from the cluster) keeps its lease fresh: the
    retry waits rather than train beside it."""
    files = store.trial("trial-f")
    alive = TrialLease(files, "a worker cut off", renew_s=0.5, home="host:/results")  # stale after 1 s unchanged
    alive.acquire()
    retry = TrialLease(files, "its retry", renew_s=0.5, home="host:/results")
    waiter = threading.Thread(target=retry.acquire, kwargs={"say": lambda line: None, "poll_s": 0.02})
    waiter.start()
    for _ in range(20):  # 2 s, twice the same-dir stale time, renewed every 0.1 s
        time.sleep(0.1)
        alive.renew()
    assert waiter.is_alive() and retry.version is None
    alive.release()
    waiter.join(timeout=10)
    assert retry.version is not None
    retry.release()


def test_two_racing_creators_get_one_lease(store: Storage) -> None:
    files = store.trial("trial-c")
    leases = [TrialLease(files, f"driver {i}", renew_s=60) for i in range(4)]
    made = [None] * len(leases)
    barrier = threading.Barrier(len(leases))

    def create(i: int) -> None:
        barrier.wait()
        made[i] = leases[i]._backend.create(leases[i]._content())

    threads = [threading.Thread(target=create, args=(i,)) for i in range(len(leases))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(m is not None for m in made) == 1


def test_leased_renews_while_the_block_runs_and_releases_at_the_end(
    store: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LTBENCH_LEASE_RENEW_S", "0.05")
    files = store.trial("trial-d")
    with leased(files, "driver one") as lease:
        time.sleep(0.5)
        assert lease.renewals >= 3 and not lease.lost.is_set()
        assert files.read_json(LEASE_FILE)["holder"] == "driver one"
    assert not files.exists(LEASE_FILE)


def test_a_store_whose_lease_client_is_missing_is_refused_in_one_line(
    gcs: GcsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = gcs.storage("lease-client")
    check_lease_client(store)  # installed here: nothing to say
    monkeypatch.setattr(lease_module, "_importable", lambda module: False)
    with pytest.raises(LtbenchError, match=r"need the google.cloud.storage package; .*pip install 'ltbench\[gcs\]'"):
        check_lease_client(store)
    check_lease_client(Storage.open("/tmp/a-local-store"))  # a local store needs no client
