"""R4: the outcome of every end state and stop kind (SPEC R4)."""

from __future__ import annotations

import pytest

from gim_tasks.lifecycle import RUN_STATES, STOP_KINDS, outcome


@pytest.mark.parametrize(
    ("state", "stop_kind", "expected"),
    [
        ("Completed", None, "success"),
        ("Completed with warnings", None, "success"),
        ("Failed", None, "failure"),
        ("Stopped", "window-end", "success"),
        ("Stopped", "maintenance", "success"),
        ("Stopped", "preempted", "success"),
        ("Stopped", "operator", "operator"),
        ("Stopped", "shutdown", "failure"),
        ("Stopped", "terminated", "failure"),
        ("Stopped", "time-limit", "failure"),  # L1
        ("Stopped", None, "failure"),  # a stop nobody recorded a kind for was not planned
        ("Running", None, None),
        ("Scheduled", None, None),
        ("Cancelled", None, None),
        ("Rejected", None, None),
    ],
)
def test_r4_outcome(state: str, stop_kind: str | None, expected: str | None) -> None:
    assert outcome(state, stop_kind) == expected


@pytest.mark.parametrize(
    ("skip", "expected"), [(None, None), ("rule", None), ("blocked", "failure")]
)
def test_r4_a_firing_blocked_by_the_check_is_a_failure_a_rules_skip_nothing(
    skip: str | None, expected: str | None
) -> None:
    assert outcome("Rejected", None, skip) == expected


def test_r4_every_state_and_kind_is_covered() -> None:
    assert set(RUN_STATES) == {
        "Completed",
        "Completed with warnings",
        "Failed",
        "Stopped",
        "Running",
        "Scheduled",
        "Cancelled",
        "Rejected",
    }
    assert set(STOP_KINDS) == {
        "window-end",
        "maintenance",
        "preempted",
        "operator",
        "shutdown",
        "terminated",
        "time-limit",
    }
