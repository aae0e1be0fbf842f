"""SPEC H1 without servers: the active beat decides only within its lease (a share of the
RedBeat lock's timeout since its last extension, on its monotonic clock), and steps down after
its ticks failed for a while."""

from __future__ import annotations

from gim_tasks.schedule.leadership import SAFE, Lease


def test_h1_a_beat_decides_only_within_its_lease() -> None:
    lease = Lease(timeout=5.0, step_down_after=10.0)
    assert not lease.may_decide(100.0)  # never extended: never decides
    lease.extended(100.0)
    assert lease.may_decide(100.0 + SAFE * 5.0 - 0.01)
    # A tick that hung on a cut-off database past the lock's timeout decides nothing.
    assert not lease.may_decide(100.0 + SAFE * 5.0)
    assert not lease.may_decide(130.0)
    lease.extended(131.0)
    assert lease.may_decide(131.5)
    assert Lease(timeout=None, step_down_after=10.0).may_decide(0.0)  # no lock: one beat


def test_h1_a_beat_steps_down_after_failing_ticks_and_a_success_resets_it() -> None:
    lease = Lease(timeout=5.0, step_down_after=10.0)
    assert not lease.failed(0.0)
    assert not lease.failed(9.9)
    lease.succeeded()
    assert not lease.failed(20.0)  # counted from the first failure in a row
    assert not lease.failed(29.0)
    assert lease.failed(30.0)
