"""The 13 hierarchies of SPEC M4 x 6 levels, declared once; tables and SQL are generated.

A hierarchy names its source fact, its grouping columns (dimension keys of the fact, or a
dimension attribute reached by a join) and its measures (SQL aggregates over fact rows ``f``).
SUBHOUR rows (15 minutes, keyed by the UTC ``date_time_key``) are computed from the facts;
every higher level rolls up from the level below by summing its measures. HOUR and above are
local buckets in the schedule's time zone (S10: local midnight ends the reporting day), keyed by
the local wall time of the bucket start.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import BigInteger, Column, DateTime, Index, Integer, MetaData, Table, Text

LEVELS = ("SUBHOUR", "HOUR", "DAY", "MONTH", "QUARTER", "YEAR")
#: Local bucket of each level above SUBHOUR, as SQL over date_time row ``d``.
BUCKETS = {
    "HOUR": "d.local_date + make_time(d.local_hour, 0, 0)",
    "DAY": "d.local_date::timestamp",
    "MONTH": "date_trunc('month', d.local_date)",
    "QUARTER": "date_trunc('quarter', d.local_date)",
    "YEAR": "date_trunc('year', d.local_date)",
}


@dataclass(frozen=True)
class Hierarchy:
    name: str
    fact: str
    groups: tuple[tuple[str, str], ...]  # (column, SQL over f and the joins)
    measures: tuple[tuple[str, str], ...]  # (column, SQL aggregate over f)
    joins: str = ""

    def table(self, level: str) -> str:
        return f"agg_{self.name.lower()}_{level.lower()}"

    @property
    def rows_measure(self) -> str:
        """The measure that counts the fact rows of a group (``count(*)``): a group exists in
        a bucket exactly while it is positive, which lets a roll-up be updated by deltas."""
        return next(name for name, expr in self.measures if expr == "count(*)")


_SEG = "interaction_segment_fact"
_ANSWERED = "f.outcome IN ('answered', 'transferred')"
_SEGMENT_MEASURES = (
    ("offered", "count(*)"),
    ("answered", f"count(*) FILTER (WHERE {_ANSWERED})"),
    ("abandoned", "count(*) FILTER (WHERE f.outcome = 'abandoned')"),
    ("transferred", "count(*) FILTER (WHERE f.outcome = 'transferred')"),
    ("answered_in_service_level", "count(*) FILTER (WHERE f.answered_in_service_level)"),
    ("wait_seconds", "coalesce(sum(f.wait_seconds), 0)"),
    ("talk_seconds", "coalesce(sum(f.talk_seconds), 0)"),
    ("hold_seconds", "coalesce(sum(f.hold_seconds), 0)"),
    ("wrap_seconds", "coalesce(sum(f.wrap_seconds), 0)"),
)
_QUEUE_JOIN = "LEFT JOIN dim_queue q ON q.queue_key = f.queue_key"
_AGENT_JOIN = "LEFT JOIN dim_agent a ON a.agent_key = f.agent_key"
_DURATION = (("count", "count(*)"), ("duration_seconds", "coalesce(sum(f.duration_seconds), 0)"))

HIERARCHIES: tuple[Hierarchy, ...] = (
    Hierarchy("H_AGENT", _SEG, (("agent_key", "f.agent_key"),), _SEGMENT_MEASURES),
    Hierarchy("H_QUEUE", _SEG, (("queue_key", "f.queue_key"),), _SEGMENT_MEASURES),
    Hierarchy(
        "H_QUEUE_ABN",
        _SEG,
        (("queue_key", "f.queue_key"),),
        (
            ("offered", "count(*)"),
            ("abandoned", "count(*) FILTER (WHERE f.outcome = 'abandoned')"),
            (
                "abandoned_wait_seconds",
                "coalesce(sum(f.wait_seconds) FILTER (WHERE f.outcome = 'abandoned'), 0)",
            ),
        ),
    ),
    Hierarchy(
        "H_QUEUE_GRP", _SEG, (("queue_group", "q.queue_group"),), _SEGMENT_MEASURES, _QUEUE_JOIN
    ),
    Hierarchy(
        "H_AGENT_GRP", _SEG, (("agent_group", "a.agent_group"),), _SEGMENT_MEASURES, _AGENT_JOIN
    ),
    Hierarchy(
        "H_AGENT_QUEUE",
        _SEG,
        (("agent_key", "f.agent_key"), ("queue_key", "f.queue_key")),
        _SEGMENT_MEASURES,
    ),
    Hierarchy(
        "H_QUEUE_ACC_AGENT",
        _SEG,
        (("queue_key", "f.queue_key"), ("agent_key", "f.agent_key")),
        (
            ("offered", "count(*)"),
            ("accepted", f"count(*) FILTER (WHERE {_ANSWERED})"),
            ("talk_seconds", f"coalesce(sum(f.talk_seconds) FILTER (WHERE {_ANSWERED}), 0)"),
        ),
    ),
    Hierarchy(
        "H_ID",
        "interaction_fact",
        (("media_type_key", "f.media_type_key"), ("direction", "f.direction")),
        (
            ("interactions", "count(*)"),
            ("completed", "count(*) FILTER (WHERE f.status = 'completed')"),
            ("abandoned", "count(*) FILTER (WHERE f.status = 'abandoned')"),
            ("duration_seconds", "coalesce(sum(f.duration_seconds), 0)"),
        ),
    ),
    Hierarchy(
        "H_I_AGENT",
        "agent_state_fact",
        (("agent_key", "f.agent_key"),),
        (
            (
                "ready_seconds",
                "coalesce(sum(f.duration_seconds) FILTER (WHERE f.state = 'ready'), 0)",
            ),
            (
                "not_ready_seconds",
                "coalesce(sum(f.duration_seconds) FILTER (WHERE f.state = 'not_ready'), 0)",
            ),
            ("state_changes", "count(*)"),
        ),
    ),
    Hierarchy(
        "H_I_STATE_RSN",
        "agent_state_reason_fact",
        (("agent_key", "f.agent_key"), ("state_reason_key", "f.state_reason_key")),
        _DURATION,
    ),
    Hierarchy("H_I_SESS_STATE", "agent_session_fact", (("agent_key", "f.agent_key"),), _DURATION),
    Hierarchy(
        "H_AGENT_CAMPAIGN",
        "campaign_attempt_fact",
        (("agent_key", "f.agent_key"), ("campaign_key", "f.campaign_key")),
        (
            ("attempts", "count(*)"),
            ("answered", "count(*) FILTER (WHERE f.result = 'answered')"),
            ("talk_seconds", "coalesce(sum(f.talk_seconds), 0)"),
        ),
    ),
    Hierarchy(
        "H_CAMPAIGN",
        "campaign_attempt_fact",
        (("campaign_key", "f.campaign_key"),),
        (
            ("attempts", "count(*)"),
            ("answered", "count(*) FILTER (WHERE f.result = 'answered')"),
            ("talk_seconds", "coalesce(sum(f.talk_seconds), 0)"),
        ),
    ),
)
BY_NAME = {h.name: h for h in HIERARCHIES}

#: Aggregate tables live in their own metadata: created by the job from this registry
#: (``ensure_tables``), not by migrations, so adding a hierarchy needs no migration.
aggregate_metadata = MetaData()


def _build_tables() -> dict[str, Table]:
    tables = {}
    for hierarchy in HIERARCHIES:
        for level in LEVELS:
            key = (
                Column("date_time_key", BigInteger, nullable=False)
                if level == "SUBHOUR"
                else Column("bucket", DateTime(timezone=False), nullable=False)
            )
            groups = [
                Column(
                    name, Text if name in ("queue_group", "agent_group", "direction") else Integer
                )
                for name, _ in hierarchy.groups
            ]
            measures = [Column(name, BigInteger, nullable=False) for name, _ in hierarchy.measures]
            name = hierarchy.table(level)
            tables[name] = Table(
                name, aggregate_metadata, key, *groups, *measures, Index(f"ix_{name}_key", key.name)
            )
    return tables


TABLES = _build_tables()
