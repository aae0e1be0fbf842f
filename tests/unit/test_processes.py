"""The shared process harness (devtools/processes.py; issue "Structure" item 4): log files,
waiting with the logs' tails, the restart policy, and a stop that leaves nothing behind (a
child's own children included)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from devtools.processes import ProcessGroup


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for init to reap it is not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_logs_restart_policy_and_a_stop_that_leaves_nothing(tmp_path: Path) -> None:
    group = ProcessGroup(dict(os.environ), log_dir=tmp_path, grace=2.0)
    # A child that forks a grandchild (as a Celery worker forks its pool) and ignores SIGTERM.
    group.start(
        "parent",
        ["sh", "-c", "trap '' TERM; sleep 300 & echo grandchild $!; wait"],
    )
    group.start("quitter", ["sh", "-c", "echo bye; exit 3"])
    group.wait_until(lambda: "grandchild" in (tmp_path / "parent.log").read_text(), 10, "fork")
    grandchild = int((tmp_path / "parent.log").read_text().split()[-1])
    group.wait_until(lambda: group.process("quitter").poll() is not None, 10, "quitter exits")
    assert [child.name for child in group.exited()] == ["quitter"]
    assert group.restart_exited(only=lambda name: name == "quitter") == ["quitter"]
    assert group.restarts == ["quitter exited with code 3"]
    group.wait_until(lambda: (tmp_path / "quitter.log").read_text().count("bye") == 2, 10, "2x")
    group.signal("quitter", signal.SIGKILL)  # on purpose: not restarted
    assert group.restart_exited() == []
    with pytest.raises(AssertionError, match="never: not within 0.5 s") as failure:
        group.wait_until(lambda: False, 0.5, "never")
    assert "--- parent.log" in str(failure.value)  # the logs' tails come with the failure
    group.stop_all()
    assert group.process("parent").poll() is not None
    group.wait_until(lambda: not _alive(grandchild), 5, "the grandchild ends with its group")
