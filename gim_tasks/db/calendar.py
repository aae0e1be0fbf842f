"""DATE_TIME calendars at 15-minute grain (SPEC S10: local midnight ends the reporting day).

The default calendar is the ``date_time`` table in ``[schedule] timezone``; custom calendars
(``[gim-etl] date-time-extra-time-zones``) live in ``date_time_extra`` keyed by calendar name.
A key is the UTC epoch second of the interval start, so every calendar shares keys with the
facts; only the local attributes differ.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

GRAIN_SECONDS = 900

#: Local attributes of key k in zone :tz, in date_time's column order after (key, start, tz).
_LOCAL = (
    "(to_timestamp(k) AT TIME ZONE :tz)::date, (to_timestamp(k) AT TIME ZONE :tz)::time, "
    "extract(hour FROM to_timestamp(k) AT TIME ZONE :tz), "
    "extract(isodow FROM to_timestamp(k) AT TIME ZONE :tz), "
    "extract(month FROM to_timestamp(k) AT TIME ZONE :tz), "
    "extract(quarter FROM to_timestamp(k) AT TIME ZONE :tz), "
    "extract(year FROM to_timestamp(k) AT TIME ZONE :tz)"
)


def key_of(instant: datetime) -> int:
    return int(instant.timestamp()) // GRAIN_SECONDS * GRAIN_SECONDS


def key_sql(instant: str) -> str:
    """SQL of :func:`key_of` for the timestamptz expression ``instant``."""
    return f"(floor(extract(epoch FROM {instant}) / {GRAIN_SECONDS}) * {GRAIN_SECONDS})::bigint"


def insert_keys_sql(keys_query: str) -> str:
    """INSERT of the default calendar rows for the keys ``keys_query`` yields (column k)."""
    return (
        f"INSERT INTO date_time SELECT k, to_timestamp(k), :tz, {_LOCAL} "
        f"FROM ({keys_query}) keys ON CONFLICT (date_time_key) DO NOTHING"
    )


def fill_range(conn: Connection, tz: str, first_key: int, last_key: int) -> int:
    """Add the default calendar's missing rows from ``first_key`` to ``last_key``."""
    result = conn.execute(
        sa.text(
            insert_keys_sql(
                "SELECT generate_series(CAST(:a AS bigint), CAST(:b AS bigint), 900) AS k"
            )
        ),
        {"tz": tz, "a": first_key, "b": last_key},
    )
    return int(result.rowcount or 0)


def repopulate(conn: Connection, tz: str) -> int:
    """Recompute the local attributes of every row whose zone is not ``tz`` (the calendar's
    definition changed)."""
    result = conn.execute(
        sa.text(
            "UPDATE date_time d SET time_zone = :tz, (local_date, local_time, local_hour, "
            f"day_of_week, month, quarter, year) = (SELECT {_LOCAL} FROM (SELECT "
            "d.date_time_key AS k) key) WHERE d.time_zone <> :tz"
        ),
        {"tz": tz},
    )
    return int(result.rowcount or 0)


def fill_extra(conn: Connection, calendar: str, first_key: int, last_key: int) -> int:
    """Add a custom calendar's missing rows (its name is its IANA zone)."""
    result = conn.execute(
        sa.text(
            f"INSERT INTO date_time_extra SELECT :tz, k, {_LOCAL} FROM generate_series("
            "CAST(:a AS bigint), CAST(:b AS bigint), 900) AS k "
            "ON CONFLICT (calendar, date_time_key) DO NOTHING"
        ),
        {"tz": calendar, "a": first_key, "b": last_key},
    )
    return int(result.rowcount or 0)
