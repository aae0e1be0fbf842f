"""Genesys Info Mart option files, read as GIM wrote them (issue "Data safety and scale").

Operators migrating bring their GIM application's options. Three things differ:

- **Options GIM has and gim-tasks does not use** (``aggregation-engine-class-name``, the
  ``partitioning-*`` family, …). ``gim config import`` reports each one "not used by
  gim-tasks", naming its counterpart here when there is one, and stores nothing for it. The
  names are those of the GIM 8.5 Options Reference for ``[schedule]``, ``[gim-etl]``,
  ``[gim-export]`` and ``[date-time]``; a name in neither list is still refused, with the
  closest known name suggested.
- **``[date-time]``**: GIM keeps the calendar options in their own section; here they are in
  ``[gim-etl]``, where the import puts them (with a note).
- **Time zones.** GIM takes Java time-zone IDs; gim-tasks takes IANA names, which have no
  three-letter zones and no ``GMT+02:00``. [decision] An import maps each Java ID to the IANA
  zone Java itself uses for it (``java.time.ZoneId.SHORT_IDS``; ``GMT+02:00`` to the fixed
  ``Etc/GMT-2``), so the schedule keeps exactly the meaning it had in GIM, and warns naming
  the zone stored and, for fixed offsets (which never observe daylight saving), what to set
  instead. An offset with minutes (``UTC-05:30``) has no IANA fixed zone and is refused,
  naming what to use. ``gim config set`` and the web refuse Java IDs, naming the IANA zone:
  typed by hand, the right name costs nothing.
"""

from __future__ import annotations

import re

from gim_tasks.schedule.jobs import AGGREGATE

#: java.time.ZoneId.SHORT_IDS: the zone Java (so GIM) means by each three-letter ID. EST, MST
#: and HST are fixed offsets in Java.
JAVA_SHORT_IDS: dict[str, str] = {
    "ACT": "Australia/Darwin",
    "AET": "Australia/Sydney",
    "AGT": "America/Argentina/Buenos_Aires",
    "ART": "Africa/Cairo",
    "AST": "America/Anchorage",
    "BET": "America/Sao_Paulo",
    "BST": "Asia/Dhaka",
    "CAT": "Africa/Harare",
    "CNT": "America/St_Johns",
    "CST": "America/Chicago",
    "CTT": "Asia/Shanghai",
    "EAT": "Africa/Addis_Ababa",
    "ECT": "Europe/Paris",
    "EST": "Etc/GMT+5",
    "HST": "Etc/GMT+10",
    "IET": "America/Indiana/Indianapolis",
    "IST": "Asia/Kolkata",
    "JST": "Asia/Tokyo",
    "MIT": "Pacific/Apia",
    "MST": "Etc/GMT+7",
    "NET": "Asia/Yerevan",
    "NST": "Pacific/Auckland",
    "PLT": "Asia/Karachi",
    "PNT": "America/Phoenix",
    "PRT": "America/Puerto_Rico",
    "PST": "America/Los_Angeles",
    "SST": "Pacific/Guadalcanal",
    "VST": "Asia/Ho_Chi_Minh",
}

_OFFSET = re.compile(r"(?:GMT|UTC|UT)([+-])(\d{1,2})(?::?(\d{2}))?")

#: GIM options gim-tasks does not use -> why, or its counterpart here.
UNUSED: dict[tuple[str, str], str] = {
    ("schedule", "on-demand-migration"): "schema migrations run with `gim db upgrade`",
    ("gim-etl", "aggregation-engine-class-name"): f"aggregation is built in: {AGGREGATE}",
    ("gim-etl", "days-to-keep-gim-facts"): "the counterpart is [gim-etl] days-to-keep-facts",
    ("gim-etl", "days-to-keep-gidb-facts"): "the counterpart is [gim-etl] days-to-keep-staging",
    ("gim-etl", "days-to-keep-discards-and-job-history"): (
        "the counterparts are [gim-etl] days-to-keep-discards and days-to-keep-job-history"
    ),
    ("gim-etl", "days-to-keep-active-facts"): "no long-living multimedia interactions are kept",
    ("gim-etl", "days-to-keep-cfg-facts"): "configuration facts are not kept",
    ("gim-etl", "extract-data-chunk-size"): (
        "extraction batches are counted in rows: [gim-etl] extract-batch-size"
    ),
    ("gim-etl", "extract-data-thread-pool-size"): "the counterpart is [gim-etl] parallel-tables",
    ("gim-etl", "extract-data-max-conn"): "one connection per table extracted",
    ("gim-etl", "extract-data-stuck-threshold"): (
        "a stuck transaction never loses rows here (D1: the extraction horizon)"
    ),
    ("gim-etl", "extract-data-cfg-facts-chunk-size"): "configuration facts are not extracted",
    ("gim-etl", "partitioning-ahead-range"): (
        "the counterpart is [gim-etl] partitions-days-ahead, in days"
    ),
    ("gim-etl", "partitioning-curr-intrvl-in-days"): "fact partitions are one UTC day (D2)",
    ("gim-etl", "partitioning-interval-size-gidb"): "staging is not partitioned",
    ("gim-etl", "partitioning-interval-size-gidb-mm"): "staging is not partitioned",
    ("gim-etl", "partitioning-interval-size-gidb-ocs"): "staging is not partitioned",
    ("gim-etl", "partitioning-interval-size-gim"): "fact partitions are one UTC day (D2)",
    ("gim-etl", "max-time-deviation"): "the IDBs' clocks are not compared",
    ("gim-etl", "merge-chunk-size"): "there is no merge job",
    ("gim-etl", "merge-failed-is-link-timeout"): "there is no merge job",
    ("gim-etl", "max-call-duration"): "call durations are taken as the IDB records them",
    ("gim-etl", "max-session-duration-in-hours"): "sessions are taken as the IDB records them",
    ("gim-etl", "purge-thread-pool-size"): "purges run in bounded batches, one at a time",
    ("gim-etl", "purge-transaction-size"): "purge batches are 10,000 rows",
    ("date-time", "date-time-start-year"): "DATE_TIME is filled from yesterday onwards",
    ("date-time", "date-time-table-name"): "the calendar table is date_time",
    ("date-time", "date-time-tz"): "the calendar is in [schedule] timezone",
    ("date-time", "first-day-of-week"): "weeks are ISO weeks, from Monday",
    ("date-time", "fiscal-year-start"): "there is no fiscal calendar",
    ("date-time", "simple-week-numbering"): "weeks are ISO weeks",
}

#: GIM's [date-time] options that gim-tasks keeps in [gim-etl].
MOVED: dict[tuple[str, str], tuple[str, str]] = {
    ("date-time", name): ("gim-etl", name)
    for name in ("date-time-max-days-ahead", "date-time-min-days-ahead")
}

#: Sections a GIM file may have beyond gim-tasks' own.
GIM_SECTIONS = ("date-time",)


def gim_names(section: str) -> list[str]:
    """GIM's names in ``section`` that gim-tasks does not use (for suggestions)."""
    return [name for (sec, name) in (*UNUSED, *MOVED) if sec == section]


def java_zone(name: str) -> tuple[str, str] | None:
    """For a Java time-zone ID that is not an IANA name: (the IANA zone Java means by it, the
    warning to show). None when ``name`` is not such an ID. Raises ``ValueError`` for a fixed
    offset IANA cannot express (minutes)."""
    if name in JAVA_SHORT_IDS:
        iana = JAVA_SHORT_IDS[name]
        if iana.startswith("Etc/"):
            return iana, (
                f"GIM's (Java's) {name} is a fixed offset without daylight saving: stored as "
                f"{iana}; if the business observes daylight saving, set its zone instead "
                "(for example America/New_York)"
            )
        return iana, f"GIM's (Java's) {name} is {iana}: stored as {iana}"
    match = _OFFSET.fullmatch(name)
    if match is None:
        return None
    sign, hours, minutes = match.group(1), int(match.group(2)), int(match.group(3) or 0)
    if minutes:
        raise ValueError(
            f"{name} is a fixed offset of {sign}{hours:02d}:{minutes:02d}, which no IANA zone "
            "has; use the zone of the place, for example Asia/Kolkata (+05:30) or "
            "America/St_Johns (-03:30)"
        )
    if hours == 0:
        return "UTC", f"{name} is UTC: stored as UTC"
    if (sign == "+" and hours > 14) or (sign == "-" and hours > 12):
        raise ValueError(f"{name} is beyond the offsets of any zone (-12:00 to +14:00)")
    # IANA's Etc zones write the sign inverted (POSIX): GMT+02:00 is Etc/GMT-2.
    iana = f"Etc/GMT{'-' if sign == '+' else '+'}{hours}"
    return iana, (
        f"{name} is a fixed offset without daylight saving: stored as {iana} (IANA writes "
        "the sign inverted); if the business observes daylight saving, set its zone instead "
        "(for example Europe/Berlin)"
    )
