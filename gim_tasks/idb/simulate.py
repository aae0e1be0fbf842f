"""Live traffic for ``./dev up`` (``gim idb simulate``): calls trickle into an IDB in real time.

Several writer threads each open a transaction, insert a call that has just started (no end
yet), wait a random moment and commit: their transactions commit out of id order, which is
exactly what Extract must survive (D1). A closer thread ends calls later by updating them, so
Extract sees changed rows too (late updates).
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import psycopg

from gim_tasks.idb.generator import Config, call_segments, ensure_config

CALL_SECONDS = 20  # a simulated call lasts at least this long before the closer ends it


def _writer(
    url: str,
    config: Config,
    rate_per_hour: int,
    stop: threading.Event,
    counts: Counter[str],
    lock: threading.Lock,
    seed: int,
) -> None:
    rng = random.Random(seed)
    with psycopg.connect(url) as conn:
        while not stop.is_set():
            with conn.transaction():
                now = datetime.now(UTC)
                interaction_id = conn.execute(
                    "INSERT INTO interaction (media_type_id, direction, customer_segment_id, "
                    "service_type_id, created_at, status) VALUES (%s, 'inbound', %s, %s, %s, "
                    "'active') RETURNING id",
                    (
                        config.media[0],
                        rng.choice(config.segments),
                        rng.choice(config.service_types),
                        now,
                    ),
                ).fetchone()[0]  # type: ignore[index]
                scratch: Counter[str] = Counter()
                segment = call_segments(rng, config, interaction_id, now, scratch)[0]
                # Still in progress: no end, no wrap-up yet; the closer fills them in.
                row = list(segment)
                row[9] = row[10] = None
                row[11] = "active"
                conn.execute(
                    "INSERT INTO party_segment (interaction_id, seq, queue_id, agent_id, "
                    "queued_at, routed_at, ringing_at, talk_start_at, hold_seconds, "
                    "wrap_start_at, ended_at, outcome) VALUES "
                    "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    row,
                )
                # Hold the transaction open a random moment: commits come out of id order.
                stop.wait(rng.uniform(0, 1.5))
            with lock:
                counts["calls_started"] += 1
            stop.wait(rng.expovariate(rate_per_hour / 3600))


def _closer(
    url: str, stop: threading.Event, counts: Counter[str], lock: threading.Lock, call_seconds: float
) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        while not stop.wait(min(2.0, call_seconds)):
            cutoff = datetime.now(UTC) - timedelta(seconds=call_seconds)
            closed = conn.execute(
                "WITH ended AS (UPDATE party_segment SET "
                " wrap_start_at = greatest(queued_at, %(cutoff)s - interval '10 seconds'), "
                " ended_at = greatest(queued_at, %(cutoff)s), "
                " outcome = CASE WHEN agent_id IS NULL THEN 'abandoned' ELSE 'answered' END "
                " WHERE outcome = 'active' AND queued_at < %(cutoff)s RETURNING interaction_id, "
                " ended_at, outcome) "
                "UPDATE interaction i SET ended_at = e.ended_at, status = CASE WHEN "
                " e.outcome = 'abandoned' THEN 'abandoned' ELSE 'completed' END "
                "FROM ended e WHERE i.id = e.interaction_id",
                {"cutoff": cutoff},
            ).rowcount
            with lock:
                counts["calls_ended"] += closed or 0


def simulate(
    url: str,
    *,
    rate_per_hour: int = 3600,
    writers: int = 4,
    duration: float | None = None,
    seed: int = 1,
    call_seconds: float = CALL_SECONDS,
    stop: threading.Event | None = None,
) -> dict[str, int]:
    """Trickle calls into the IDB at ``url`` until ``duration`` seconds pass or ``stop`` is
    set; returns the counts."""
    stop = stop or threading.Event()
    with psycopg.connect(url) as conn, conn.transaction():
        config = ensure_config(conn, 50, 10, random.Random(seed))
    counts: Counter[str] = Counter()
    lock = threading.Lock()
    threads = [
        threading.Thread(
            target=_writer,
            args=(url, config, max(1, rate_per_hour // writers), stop, counts, lock, seed + n),
            daemon=True,
        )
        for n in range(writers)
    ]
    threads.append(
        threading.Thread(target=_closer, args=(url, stop, counts, lock, call_seconds), daemon=True)
    )
    for thread in threads:
        thread.start()
    deadline = None if duration is None else time.monotonic() + duration
    try:
        while not stop.wait(0.5):
            if deadline is not None and time.monotonic() >= deadline:
                stop.set()
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
    return dict(counts)
