"""in_parallel: the helper that runs a job's tables or sources side by side (issue 5)."""

from __future__ import annotations

import threading
import time

import pytest

from gim_tasks.jobs.base import Aborted, StopRequested, in_parallel


def test_r1_results_come_back_in_item_order() -> None:
    def body(item: int, failed: threading.Event) -> int:
        time.sleep(0.01 * (5 - item))  # later items finish first
        return item * item

    assert in_parallel(3, [1, 2, 3, 4], body, "t") == [1, 4, 9, 16]


def test_r1_a_failure_tells_the_others_and_the_first_real_error_is_raised() -> None:
    ended: list[str] = []
    started = threading.Barrier(2)

    def body(item: str, failed: threading.Event) -> str:
        started.wait(timeout=5)
        if item == "bad":
            raise ValueError("table bad failed")
        for _ in range(500):  # "batches": the others stop at the next boundary
            if failed.is_set():
                ended.append(item)
                raise Aborted(item)
            time.sleep(0.01)
        return item

    with pytest.raises(ValueError, match="table bad failed"):
        in_parallel(2, ["bad", "slow", "never"], body, "t")
    assert ended == ["slow"]  # "never" did not start: it was queued behind the failure


def test_m6_a_stop_request_is_raised_as_such() -> None:
    def body(item: int, failed: threading.Event) -> int:
        if item == 2:
            raise StopRequested("stopped by operator")
        return item

    with pytest.raises(StopRequested, match="stopped by operator"):
        in_parallel(1, [1, 2, 3], body, "t")
