"""Benchmarks (./dev bench NAME) and what they share."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from datetime import datetime, timedelta


def median_per_history(
    marts: dict[int, tuple[str, str]],
    samples: int,
    start: datetime,
    traffic: dict[str, int],
    measure: Callable[[str, str], float],
) -> dict[int, float]:
    """For each history (days -> (IDB URL, Info Mart URL)): write one new hour of traffic
    (``generate`` keywords ``traffic``) right after the history, ``measure(idb, mart)`` the
    work it causes; ``samples`` hours, alternating between the histories so that machine drift
    hits all alike. Returns the median seconds per history."""
    import psycopg

    from gim_tasks.idb.generator import generate

    seconds: dict[int, list[float]] = {days: [] for days in marts}
    for hour in range(samples):
        for days, (idb, mart) in marts.items():
            with psycopg.connect(idb, autocommit=True) as conn:
                generate(
                    conn, start + timedelta(days=days, hours=8 + hour), 1, seed=99 + hour, **traffic
                )
            seconds[days].append(measure(idb, mart))
    return {days: statistics.median(values) for days, values in seconds.items()}
