"""Deterministic, realistic contact-center traffic for an IDB (``gim idb generate``).

The same seed and arguments give the same traffic. Arrivals follow a daily curve (quiet nights,
a morning and an afternoon peak); about 8 % of calls abandon in queue, 10 % are transferred to a
second queue; agents work 8-hour shifts with breaks and lunch (state reasons); a small share of
rows is malformed on purpose (SPEC R3: Transform must discard them, with the reason).

Rows are written with COPY, an hour of traffic per transaction.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg

MEDIA = ("voice", "chat", "email")
REASONS = (
    ("BRK", "Break"),
    ("LUN", "Lunch"),
    ("TRN", "Training"),
    ("MTG", "Meeting"),
    ("ADM", "Admin work"),
    ("SYS", "System issue"),
)
SEGMENTS = ("Gold", "Silver", "Bronze")
SERVICE_TYPES = ("Sales", "Support", "Billing", "Retention")
ABANDON_SHARE = 0.08
TRANSFER_SHARE = 0.10
MALFORMED_SHARE = 0.005
UNKNOWN_ID = 987654321  # references nothing: a malformed row


@dataclass
class Config:
    """Ids of the IDB's configuration rows."""

    media: list[int] = field(default_factory=list)
    agents: list[int] = field(default_factory=list)
    queues: list[tuple[int, int]] = field(default_factory=list)  # (queue id, media type id)
    campaigns: list[int] = field(default_factory=list)
    reasons: list[int] = field(default_factory=list)
    segments: list[int] = field(default_factory=list)
    service_types: list[int] = field(default_factory=list)


def arrival_weight(hour_of_day: float) -> float:
    """Share of the peak rate at a local hour: 10 % at night, peaks near 11:00 and 15:00."""
    if not 7 <= hour_of_day < 20:
        return 0.1
    return 0.1 + 0.9 * abs(math.sin(math.pi * (hour_of_day - 7) / 6.5))


def _ids(conn: psycopg.Connection, table: str, count: int) -> list[int]:
    """Reserve ``count`` ids from the table's sequence (safe beside concurrent writers)."""
    if count == 0:
        return []
    rows = conn.execute(
        "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
        (table, count),
    ).fetchall()
    return [row[0] for row in rows]


def _copy(
    conn: psycopg.Connection, table: str, columns: Sequence[str], rows: Iterable[Sequence[object]]
) -> int:
    count = 0
    with (
        conn.cursor() as cursor,
        cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy,
    ):
        for row in rows:
            copy.write_row(row)
            count += 1
    return count


def _scalar(conn: psycopg.Connection, query: str, params: Sequence[object] = ()) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def ensure_config(conn: psycopg.Connection, agents: int, queues: int, rng: random.Random) -> Config:
    """Create configuration rows if the IDB has none; return their ids."""
    if _scalar(conn, "SELECT count(*) FROM agent") == 0:

        def add(table: str, columns: str, *values: object) -> int:
            marks = ", ".join(["%s"] * len(values))
            return int(
                _scalar(
                    conn, f"INSERT INTO {table} ({columns}) VALUES ({marks}) RETURNING id", values
                )
            )

        media = [add("media_type", "name", name) for name in MEDIA]
        groups = [add("agent_group", "name", f"Team {n + 1}") for n in range(max(1, agents // 20))]
        qgroups = [add("queue_group", "name", name) for name in SERVICE_TYPES]
        for n in range(agents):
            add(
                "agent",
                "login, first_name, last_name, agent_group_id",
                f"agent{n + 1:04d}",
                f"First{n + 1}",
                f"Last{n + 1}",
                groups[n % len(groups)],
            )
        for n in range(queues):
            add(
                "queue",
                "name, queue_group_id, media_type_id, service_level_seconds",
                f"Q{n + 1:03d}",
                qgroups[n % len(qgroups)],
                media[0] if n % 5 < 3 else media[1 + n % 2],
                rng.choice((20, 30, 60)),
            )
        for n in range(5):
            add("campaign", "name", f"Campaign {n + 1}")
        for code, name in REASONS:
            add("state_reason", "code, name", code, name)
        for kind, values in (("customer_segment", SEGMENTS), ("service_type", SERVICE_TYPES)):
            for value in values:
                add("business_attribute", "kind, value", kind, value)
    config = Config()
    config.media = [r[0] for r in conn.execute("SELECT id FROM media_type ORDER BY id")]
    config.agents = [r[0] for r in conn.execute("SELECT id FROM agent ORDER BY id")]
    config.queues = [
        (r[0], r[1]) for r in conn.execute("SELECT id, media_type_id FROM queue ORDER BY id")
    ]
    config.campaigns = [r[0] for r in conn.execute("SELECT id FROM campaign ORDER BY id")]
    config.reasons = [r[0] for r in conn.execute("SELECT id FROM state_reason ORDER BY id")]
    config.segments = [
        r[0]
        for r in conn.execute(
            "SELECT id FROM business_attribute WHERE kind = 'customer_segment' ORDER BY id"
        )
    ]
    config.service_types = [
        r[0]
        for r in conn.execute(
            "SELECT id FROM business_attribute WHERE kind = 'service_type' ORDER BY id"
        )
    ]
    return config


INTERACTION_COLUMNS = (
    "id",
    "media_type_id",
    "direction",
    "customer_segment_id",
    "service_type_id",
    "created_at",
    "ended_at",
    "status",
)
SEGMENT_COLUMNS = (
    "interaction_id",
    "seq",
    "queue_id",
    "agent_id",
    "queued_at",
    "routed_at",
    "ringing_at",
    "talk_start_at",
    "hold_seconds",
    "wrap_start_at",
    "ended_at",
    "outcome",
)


def call_segments(
    rng: random.Random, config: Config, interaction_id: int, created: datetime, counts: Counter[str]
) -> list[tuple[object, ...]]:
    """The party segments of one call: queue wait, then abandon, or answer (and maybe a
    transfer to a second queue)."""
    segments: list[tuple[object, ...]] = []
    start = created
    for seq in (1, 2):
        queue_id = rng.choice(config.queues)[0]
        wait = timedelta(seconds=rng.expovariate(1 / 35))
        if rng.random() < ABANDON_SHARE:
            segments.append(
                (
                    interaction_id,
                    seq,
                    queue_id,
                    None,
                    start,
                    None,
                    None,
                    None,
                    0,
                    None,
                    start + wait,
                    "abandoned",
                )
            )
            break
        routed = start + wait
        ringing = routed + timedelta(seconds=1)
        talk_start = ringing + timedelta(seconds=rng.uniform(3, 12))
        talk = timedelta(seconds=rng.expovariate(1 / 240) + 20)
        hold = int(rng.expovariate(1 / 40)) if rng.random() < 0.15 else 0
        wrap_start = talk_start + talk + timedelta(seconds=hold)
        ended = wrap_start + timedelta(seconds=rng.uniform(10, 60))
        transfer = seq == 1 and rng.random() < TRANSFER_SHARE
        row: list[object] = [
            interaction_id,
            seq,
            queue_id,
            rng.choice(config.agents),
            start,
            routed,
            ringing,
            talk_start,
            hold,
            wrap_start,
            ended,
            "transferred" if transfer else "answered",
        ]
        if rng.random() < MALFORMED_SHARE:
            counts["malformed"] += 1
            defect = rng.randrange(3)
            if defect == 0:
                row[10] = start - timedelta(minutes=5)  # ends before it was queued
            elif defect == 1:
                row[2] = UNKNOWN_ID  # unknown queue
            else:
                row[3] = UNKNOWN_ID  # unknown agent
        segments.append(tuple(row))
        if not transfer:
            break
        start = wrap_start
    return segments


def generate(
    conn: psycopg.Connection,
    start: datetime,
    hours: int,
    *,
    agents: int = 200,
    queues: int = 20,
    rate: int = 2000,
    seed: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, int]:
    """Write ``hours`` of traffic from ``start``; returns the counts of rows written per kind."""
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    rng = random.Random(seed)
    with conn.transaction():
        config = ensure_config(conn, agents, queues, rng)
    counts: Counter[str] = Counter()
    for hour in range(hours):
        hour_start = start + timedelta(hours=hour)
        with conn.transaction():
            _write_hour(conn, rng, config, hour_start, rate, counts)
        if progress:
            progress(hour + 1, hours)
    return {
        kind: counts[kind]
        for kind in (
            "interactions",
            "party_segments",
            "agent_sessions",
            "agent_states",
            "campaign_attempts",
            "malformed",
        )
    }


def _write_hour(
    conn: psycopg.Connection,
    rng: random.Random,
    config: Config,
    hour_start: datetime,
    rate: int,
    counts: Counter[str],
) -> None:
    local_hour = hour_start.hour + hour_start.minute / 60
    calls = max(0, round(rate * arrival_weight(local_hour) * rng.uniform(0.9, 1.1)))
    ids = _ids(conn, "interaction", calls)
    interactions, segments = [], []
    for interaction_id in ids:
        created = hour_start + timedelta(seconds=rng.uniform(0, 3600))
        parts = call_segments(rng, config, interaction_id, created, counts)
        last = parts[-1]
        media = next((m for q, m in config.queues if q == parts[0][2]), config.media[0])
        interactions.append(
            (
                interaction_id,
                media,
                rng.choice(("inbound", "inbound", "outbound")),
                rng.choice(config.segments),
                rng.choice(config.service_types),
                created,
                last[10],
                "abandoned" if last[11] == "abandoned" else "completed",
            )
        )
        segments += parts
    counts["interactions"] += _copy(conn, "interaction", INTERACTION_COLUMNS, interactions)
    counts["party_segments"] += _copy(conn, "party_segment", SEGMENT_COLUMNS, segments)
    _write_shifts(conn, rng, config, hour_start, counts)
    attempts = [
        (
            rng.choice(config.campaigns),
            rng.choice(config.agents),
            hour_start + timedelta(seconds=rng.uniform(0, 3600)),
            rng.choice(("answered", "no_answer", "busy", "machine")),
            int(rng.expovariate(1 / 90)),
        )
        for _ in range(max(1, calls // 10))
    ]
    counts["campaign_attempts"] += _copy(
        conn,
        "campaign_attempt",
        ("campaign_id", "agent_id", "dialed_at", "result", "talk_seconds"),
        attempts,
    )


def _write_shifts(
    conn: psycopg.Connection,
    rng: random.Random,
    config: Config,
    hour_start: datetime,
    counts: Counter[str],
) -> None:
    """Agents whose 8-hour shift starts in this hour: a session and its states."""
    starting = [
        agent
        for index, agent in enumerate(config.agents)
        if (index * 7 + hour_start.hour) % 24 == 0
        and 6 <= hour_start.hour <= 14
        or (hour_start.hour == 22 and index % 10 == 0)
    ]
    if not starting:
        return
    session_ids = _ids(conn, "agent_session", len(starting))
    sessions, states = [], []
    for session_id, agent in zip(session_ids, starting, strict=True):
        login = hour_start + timedelta(minutes=rng.uniform(0, 10))
        logout = login + timedelta(hours=8)
        sessions.append((session_id, agent, login, logout))
        moment = login
        while moment < logout:
            if rng.random() < 0.75:
                state, reason, length = "ready", None, rng.uniform(20, 50)
            else:
                state, reason, length = "not_ready", rng.choice(config.reasons), rng.uniform(5, 30)
            ended = min(logout, moment + timedelta(minutes=length))
            states.append((session_id, agent, state, reason, moment, ended))
            moment = ended
    counts["agent_sessions"] += _copy(
        conn, "agent_session", ("id", "agent_id", "login_at", "logout_at"), sessions
    )
    counts["agent_states"] += _copy(
        conn,
        "agent_state",
        ("session_id", "agent_id", "state", "reason_id", "started_at", "ended_at"),
        states,
    )
