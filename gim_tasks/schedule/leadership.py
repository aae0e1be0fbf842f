"""When the active beat may decide (SPEC H1, S11): pure, on the beat's own monotonic clock.

RedBeat's lock makes one beat active; it expires ``timeout`` seconds after its last extension.
A beat cut off from Redis cannot extend it, and a beat whose tick hangs on a cut-off database
does not come back to extend it: in both cases the standby takes the lock once it expires.
Two rules keep the old leader from deciding after that:

- **Lease.** A beat decides (launches, releases, stops, admits planned runs, starts back-fill
  items) only while less than ``SAFE`` of the lock's timeout has passed since its last
  successful extension, measured on its own monotonic clock: past that, the lock may have
  expired and another beat may hold it. A tick that resumes after a partition heals finds its
  lease run out and decides nothing; its next extension fails and it waits as the standby.
- **Step down.** A beat whose ticks keep failing (it reaches Redis, so it keeps the lock, but
  not PostgreSQL, so it cannot decide) for ``step_down_after`` seconds releases the lock, so a
  standby that can reach the database fires the next slot; it then queues for the lock again.

The firing id (S11) is the backstop: even two deciding beats start a firing once.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The share of the lock's timeout after an extension within which the beat still decides.
SAFE = 0.8


@dataclass
class Lease:
    timeout: float | None  # the lock's timeout in seconds; None: no lock (one beat, tests)
    step_down_after: float
    extended_at: float | None = None
    failing_since: float | None = None

    def extended(self, at: float) -> None:
        self.extended_at = at

    def may_decide(self, at: float) -> bool:
        if self.timeout is None:
            return True
        return self.extended_at is not None and at - self.extended_at < SAFE * self.timeout

    def failed(self, at: float) -> bool:
        """A tick failed at ``at``: True when the beat should step down now."""
        if self.failing_since is None:
            self.failing_since = at
        return at - self.failing_since >= self.step_down_after

    def succeeded(self) -> None:
        self.failing_since = None
