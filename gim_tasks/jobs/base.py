"""What every job body gets and returns."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from gim_tasks.options.values import Options

log = logging.getLogger("gim_tasks.jobs")
T = TypeVar("T")
R = TypeVar("R")


class StopRequested(Exception):
    """Raised by a body at a safe point when a stop was requested (M6); its committed work
    stays, the current transaction is rolled back."""


class StopToken:
    """Cooperative stop: bodies call :meth:`check` between batches."""

    def __init__(self, parent: StopToken | None = None) -> None:
        self._event = threading.Event()
        self.reason = ""
        self.kind: str | None = None  # R4: gim_tasks.lifecycle.StopKind, when known
        self.by: str | None = None  # M8: who asked
        #: H2: a part's token also stops when its run's does (not the other way round).
        self.parent = parent

    def request(
        self, reason: str = "stop requested", kind: str | None = None, by: str | None = None
    ) -> None:
        if not self._event.is_set():  # the first request names the stop
            self.reason, self.kind, self.by = reason, kind, by
        self._event.set()

    @property
    def requested(self) -> bool:
        return self._event.is_set() or (self.parent is not None and self.parent.requested)

    def check(self) -> None:
        if self.parent is not None and self.parent.requested and not self._event.is_set():
            self.request(self.parent.reason, self.parent.kind, self.parent.by)
        if self._event.is_set():
            raise StopRequested(self.reason)

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True when a stop was requested meanwhile."""
        return self._event.wait(seconds)


@dataclass
class Counts:
    """Counters of a run (R1): rows read, written, discarded, warnings."""

    read: int = 0
    written: int = 0
    discarded: int = 0
    warnings: int = 0
    summary: dict[str, object] = field(default_factory=dict)


def batch_transaction_settings(conn: Connection) -> None:
    """Per-batch settings: asynchronous commit. Safe here because every batch commits its data
    and its progress mark in one transaction: a server crash that loses the last commits loses
    both together, and the next run redoes exactly that work. WAL is sequential, so the run's
    final (synchronous) commit makes every earlier batch durable too."""
    conn.execute(text("SET LOCAL synchronous_commit = off"))


@dataclass
class JobContext:
    mart: Engine
    idb_urls: list[str]
    options: Options
    run_id: int | None = None
    stop: StopToken = field(default_factory=StopToken)
    counts: Counts = field(default_factory=Counts)
    progress: Callable[[str, int, int | None], None] = lambda what, done, total: None
    #: Called inside each committing Info Mart transaction: the runtime checks the run's
    #: fencing token there so that a run that lost its lease cannot commit (issue 9).
    fence: Callable[[Connection], None] = lambda conn: None
    started: float = field(default_factory=time.monotonic)
    #: GIM_OUTPUT_DIRECTORY: a relative [gim-export] output-directory is resolved under it.
    output_base: Path = Path(".")
    #: The clock, injected so that jobs are testable at any instant.
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    #: L3: the body failed with an error a retry may cure (``errors.is_transient``).
    transient: bool = False
    #: H2: set by the runtime for a recorded run: ``fan_out(ctx, body)`` runs ``body(ctx, url)``
    #: once per IDB as parts on any worker (runtime/parts.py). None: one after the other here.
    fan_out: Callable[[JobContext, Callable[[JobContext, str], int]], None] | None = None

    @contextmanager
    def transaction(self, batch: bool = False) -> Iterator[Connection]:
        """One committing Info Mart transaction of this run, the only way job bodies write.
        With ``batch``: the batch settings (:func:`batch_transaction_settings`). On leaving the
        block normally (also by ``break`` or ``return``) the run's fence is checked last, holding
        the run row FOR SHARE until the commit, so a run that lost its lease cannot commit
        (issue 9, R2); leaving by an exception rolls back."""
        with self.mart.begin() as conn:
            if batch:
                batch_transaction_settings(conn)
            yield conn
            self.fence(conn)

    def rate(self, rows: int) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        return f"{rows / elapsed:,.0f} rows/s"


class Aborted(Exception):
    """A unit of parallel work ended early because another one failed (:func:`in_parallel`)."""


def in_parallel(
    workers: int, items: Sequence[T], body: Callable[[T, threading.Event], R], name: str
) -> list[R]:
    """``body(item, failed)`` for every item, ``workers`` at a time, each in its own thread
    (and so its own database connections). When one raises, ``failed`` is set so the others
    end at their next batch boundary (raising :class:`Aborted`); once all have ended, the
    first real failure (a stop request, an error) is raised, so no transaction is left open."""
    failed = threading.Event()

    def guarded(item: T) -> R:
        if failed.is_set():
            raise Aborted(name)
        try:
            return body(item, failed)
        except BaseException:
            failed.set()
            raise

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name) as pool:
        futures = [pool.submit(guarded, item) for item in items]
        wait(futures)
    errors = [f.exception() for f in futures]
    first = next((e for e in errors if e is not None and not isinstance(e, Aborted)), None)
    if first is not None:
        raise first
    return [f.result() for f in futures]
