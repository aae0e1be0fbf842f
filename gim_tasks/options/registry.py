"""Every operator option, declared once: section, name, type, default, description.

This table is the single source of the option reference in the README (``gim config
reference`` prints it), of validation on ``set``/``import``, and of the typed values the
scheduler reads. [decision] marks a default or meaning the source documents leave open.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from gim_tasks.errors import GimError
from gim_tasks.options.types import (
    Boolean,
    ClockTime,
    CronSchedule,
    DirectoryPath,
    Duration,
    Encoding,
    Factor,
    FreshnessMinutes,
    Integer,
    JobCounts,
    JobLimits,
    JobRetries,
    OptionalDate,
    OptionType,
    PercentRange,
    ReadyBy,
    Severity,
    TimeZone,
    TimeZoneList,
)
from gim_tasks.schedule.jobs import (
    AGGREGATE,
    EXPORT,
    EXTRACT,
    JOBS,
    MAINTAIN,
    TRANSFORM,
    UPDATE_STATS,
)


class OptionError(GimError):
    """An option name or value that cannot be accepted; nothing was stored."""

    exit_code = 2


@dataclass(frozen=True)
class OptionSpec:
    section: str
    name: str
    type: OptionType
    default: str
    description: str

    @property
    def key(self) -> tuple[str, str]:
        return (self.section, self.name)

    def parse(self, raw: str) -> Any:
        """The typed value of ``raw``, or :class:`OptionError` naming section, option, value
        and what is allowed."""
        try:
            return self.type.parse(raw)
        except ValueError as error:
            detail = str(error)
            # Cron errors are already specific; other reasons are short and the allowed
            # form says the rest.
            specific = self.type.specific or detail.startswith(("cron ", "GIM"))
            reason = f" ({detail})" if specific else ""
            raise OptionError(
                f"[{self.section}] {self.name} = '{raw}' is invalid{reason}: allowed is "
                f"{self.type.allowed}"
            ) from None


_bool, _clock, _cron = Boolean(), ClockTime(), CronSchedule()


def _days(minimum: int = 1, maximum: int = 36500) -> Integer:
    return Integer(minimum, maximum, "days")


#: The fact tables and aggregate levels data freshness judges (O4; a unit test keeps them equal
#: to the Info Mart's: this module stays free of the table definitions).
FRESHNESS_TABLES = (
    "interaction_fact",
    "interaction_segment_fact",
    "agent_session_fact",
    "agent_state_fact",
    "agent_state_reason_fact",
    "campaign_attempt_fact",
    "SUBHOUR",
    "HOUR",
    "DAY",
    "MONTH",
    "QUARTER",
    "YEAR",
)

OPTIONS: tuple[OptionSpec, ...] = (
    # [schedule] -- SPEC §2, GIM "Setting scheduling options".
    OptionSpec(
        "schedule",
        "timezone",
        TimeZone(),
        "GMT",
        "Time zone of every schedule time and cron (S10).",
    ),
    OptionSpec(
        "schedule",
        "run-scheduler",
        _bool,
        "true",
        "false stops all scheduled launches; running runs continue (S9).",
    ),
    OptionSpec(
        "schedule",
        "etl-start-time",
        _clock,
        "06:30",
        "Time of day the first ETL cycle begins [decision: GIM sample schedule].",
    ),
    OptionSpec(
        "schedule",
        "etl-end-time",
        _clock,
        "00:30",
        "Time of day the final ETL cycle begins; may be past midnight. Equal to "
        "etl-start-time: round the clock [decision].",
    ),
    OptionSpec(
        "schedule",
        "etl-frequency",
        Integer(1, 1440, "minutes"),
        "30",
        "Minutes between the starts of adjacent ETL cycles (S1).",
    ),
    OptionSpec(
        "schedule",
        "run-update-stats",
        _bool,
        "true",
        f"Launch {UPDATE_STATS} on update-stats-schedule (S6).",
    ),
    OptionSpec("schedule", "update-stats-schedule", _cron, "0/10 *", f"Cron of {UPDATE_STATS}."),
    OptionSpec(
        "schedule",
        "run-aggregates",
        _bool,
        "false",
        f"Run {AGGREGATE} continuously inside the aggregation windows (S7).",
    ),
    OptionSpec(
        "schedule",
        "aggregate-schedule",
        _cron,
        "0 4",
        "Cron of the openings of aggregation windows [decision: GIM sample].",
    ),
    OptionSpec(
        "schedule",
        "aggregate-duration",
        Duration(),
        "23:00",
        "Length of each aggregation window, HH:mm [decision: GIM sample].",
    ),
    OptionSpec(
        "schedule",
        "run-maintain",
        _bool,
        "true",
        f"Launch {MAINTAIN} daily at maintain-start-time (S4).",
    ),
    OptionSpec(
        "schedule",
        "maintain-start-time",
        _clock,
        "03:00",
        f"Time of day {MAINTAIN} starts; must lie outside the ETL span.",
    ),
    OptionSpec(
        "schedule", "run-export", _bool, "false", f"Launch {EXPORT} on export-schedule (S8)."
    ),
    OptionSpec(
        "schedule",
        "export-schedule",
        _cron,
        "20 0,8,16",
        f"Cron of {EXPORT} (default 00:20, 08:20, 16:20).",
    ),
    OptionSpec(
        "schedule",
        "pause-on-failure",
        JobCounts(),
        "",
        "JOB=N, ...: after N consecutive failed runs (R4) the job pauses itself, with one "
        "alert; `gim resume JOB` ends the pause (P5).",
    ),
    # [gim-etl] -- retention, calendars, extraction batching.
    OptionSpec(
        "gim-etl",
        "days-to-keep-staging",
        _days(),
        "7",
        "Days extracted staging rows are kept after Transform processed them.",
    ),
    OptionSpec(
        "gim-etl",
        "days-to-keep-facts",
        _days(),
        "400",
        "Days of facts kept; whole expired day partitions are dropped (D2).",
    ),
    OptionSpec(
        "gim-etl",
        "days-to-keep-aggregates",
        _days(),
        "800",
        "Days of aggregate rows kept (levels below DAY).",
    ),
    OptionSpec(
        "gim-etl",
        "days-to-keep-discards",
        _days(),
        "30",
        "Days discarded source rows are kept (R3).",
    ),
    OptionSpec(
        "gim-etl", "days-to-keep-job-history", _days(), "90", "Days of run history (job_run) kept."
    ),
    OptionSpec(
        "gim-etl",
        "date-time-max-days-ahead",
        _days(1, 3660),
        "366",
        "How far ahead maintenance fills the DATE_TIME calendar.",
    ),
    OptionSpec(
        "gim-etl",
        "date-time-min-days-ahead",
        _days(1, 3660),
        "183",
        "Config check errors when the calendar reaches less far ahead than this.",
    ),
    OptionSpec(
        "gim-etl",
        "date-time-extra-time-zones",
        TimeZoneList(),
        "",
        "Custom calendars: DATE_TIME attributes in these extra zones (table date_time_extra).",
    ),
    OptionSpec(
        "gim-etl",
        "partitions-days-ahead",
        _days(1, 366),
        "14",
        "Day partitions created ahead of today for partitioned tables.",
    ),
    OptionSpec(
        "gim-etl",
        "extract-batch-size",
        Integer(100, 10_000_000, "rows"),
        "50000",
        f"Rows per {EXTRACT} batch; each batch commits with its high-water mark.",
    ),
    OptionSpec(
        "gim-etl",
        "parallel-tables",
        Integer(1, 8, "tables"),
        "2",
        f"IDB tables {EXTRACT} extracts, and traffic sources {TRANSFORM} "
        "transforms, at once, each in its own connections and batch transactions; "
        "1 = one after the other.",
    ),
    OptionSpec(
        "gim-etl",
        "extract-fan-out",
        _bool,
        "true",
        f"With several IDBs, {EXTRACT} of one cycle spreads over the workers: one part per "
        "IDB, claimed by any worker of the etl queue (the run's own worker takes parts too); "
        "still one run for the cycle: Transform waits for every part, a stop stops them all, "
        "a part lost with its worker is rerun alone (SPEC H2). false = one IDB after the "
        "other in the run's worker.",
    ),
    # [monitor] -- SPEC O1-O4: the ledger's verdicts, the watchdog, alerts, data freshness.
    OptionSpec(
        "monitor",
        "grace-seconds",
        Integer(5, 3600, "seconds"),
        "60",
        "A firing started within this many seconds of its planned instant is on time, later "
        "is late; a firing with no decision by then is missed (O1, O2).",
    ),
    OptionSpec(
        "monitor",
        "late-alert-seconds",
        Integer(5, 86400, "seconds"),
        "300",
        "A firing started later than this opens a `late` incident for its job (O3).",
    ),
    OptionSpec(
        "monitor",
        "startup-grace-seconds",
        Integer(0, 3600, "seconds"),
        "120",
        "A watchdog that started less than this long ago and has seen no beat tick yet "
        "judges neither the scheduler nor missed firings: a fresh or restarted stack raises "
        "no alarm while its beat comes up (O2).",
    ),
    OptionSpec(
        "monitor",
        "ready-by",
        ReadyBy(("ETL", "Aggregation", "Export")),
        "07:00",
        "A data day is due complete (facts, aggregates, export) at this local time of the "
        "next morning, overridden per category (`07:00, Export=08:30`: the facts are ETL, the "
        "aggregates Aggregation): a `deadline` incident opens for a day not complete by then, "
        "`deadline-at-risk` earlier when the work left will not fit (Q1).",
    ),
    OptionSpec(
        "monitor",
        "freshness-slo-minutes",
        FreshnessMinutes(("ETL", "Aggregation"), FRESHNESS_TABLES),
        "ETL=60, Aggregation=120",
        "How far the newest data may lag behind now before a `stale-data` incident opens "
        "(O4): per category (ETL: every fact table, Aggregation: every aggregate level), "
        "overridden per table or level; 0: not judged (a source without live traffic).",
    ),
    # [limits] -- SPEC L1-L3: time limits, slow runs, collisions ahead, retries.
    OptionSpec(
        "limits",
        "max-runtime",
        JobLimits(),
        "",
        "JOB=DURATION[:warn or :stop], ...: L1's time limit, enforced by the beat. warn opens a "
        "`time-limit` incident; stop (the default) asks the run to stop (M6) and, past the "
        "stop grace, revokes it: Stopped, stop kind `time-limit`, a failure (R4). "
        f"e.g. {MAINTAIN}=2h:stop, {EXPORT}=20m:warn.",
    ),
    OptionSpec(
        "limits",
        "slow-factor",
        Factor(1.1, 100.0),
        "2",
        "A run past this many times the p95 duration of its job's last 30 successful runs "
        "opens one `slow` incident (L2; only once the job has 10 successes).",
    ),
    OptionSpec(
        "limits",
        "collision-warning-minutes",
        Integer(1, 240, "minutes"),
        "5",
        "A running ETL cycle or export predicted (from its progress, or its job's p95) to "
        "still run at its job's next slot or at the next maintenance start opens a "
        "`collision-ahead` incident at least this long before that slot (L2).",
    ),
    OptionSpec(
        "limits",
        "retries",
        JobRetries(),
        "",
        "JOB=N, ...: retry a transient failure (worker lost, a lost PostgreSQL, IDB or Redis "
        "connection, a lock wait timeout) up to N times (L3), never past the job's next slot "
        "nor into maintenance; mails and webhooks say only the final outcome.",
    ),
    OptionSpec(
        "limits",
        "retry-delay-seconds",
        Integer(5, 3600, "seconds"),
        "60",
        "Delay before the first retry; each further retry waits twice as long (L3).",
    ),
    # [pools] -- SPEC B2: database slots the heavy jobs share.
    OptionSpec(
        "pools",
        "heavy-db",
        Integer(1, 64, "slots"),
        "3",
        "Slots of the `heavy-db` pool: the runs of the jobs in `weights` together hold at most "
        "this many; a run that does not fit waits (Scheduled, with its position and the "
        "holders), higher priorities first: ETL, maintenance, aggregation, export, statistics, "
        "back-fill items (B2). Back-fill items leave room for the heaviest job above them.",
    ),
    OptionSpec(
        "pools",
        "weights",
        JobCounts(zero=True),
        "",
        "JOB=N, ...: the slots of `heavy-db` each run of a job takes, over the catalogue's "
        "(ETL, maintenance and back-fill items: 1 each; the others: not in the pool); 0 "
        "takes a job out of the pool (B2).",
    ),
    # [quality] -- SPEC Q3: quality gates in front of the export.
    OptionSpec(
        "quality",
        "discard-ratio",
        Severity(),
        "error",
        "Discarded source rows (R3) per IDB and fact table, over each export chunk and each "
        "closed day, against `discard-ratio-max-percent`. error: a failing chunk (a day: its "
        "chunks) is held from the export and `check-failed` opens (Q3).",
    ),
    OptionSpec(
        "quality",
        "discard-ratio-max-percent",
        Integer(1, 100, "percent"),
        "5",
        "Highest share of discarded rows (discards / (facts + discards)) that passes.",
    ),
    OptionSpec(
        "quality",
        "discard-ratio-min-rows",
        Integer(1, 1_000_000, "rows"),
        "50",
        "Fewer source rows than this in the judged interval: the ratio is not judged (a quiet "
        "night hour with 1 discard of 10 rows is no alarm).",
    ),
    OptionSpec(
        "quality",
        "hour-rows",
        Severity(),
        "warn",
        "Fact rows of each closed hour, per fact table, against the median of the same local "
        "hour on the last four same weekdays, within `hour-rows-bounds` (Q3).",
    ),
    OptionSpec(
        "quality",
        "hour-rows-bounds",
        PercentRange(),
        "50-200",
        "Rows of an hour pass between these percentages of the same-weekday median.",
    ),
    OptionSpec(
        "quality",
        "hour-rows-min-rows",
        Integer(1, 1_000_000, "rows"),
        "50",
        "A same-weekday median below this is not judged (quiet hours vary too much); fewer "
        "than two earlier weeks with data: not judged either.",
    ),
    OptionSpec(
        "quality",
        "aggregate-verify",
        Severity(),
        "warn",
        "Once per closed day, when its aggregation is done: `gim aggregate verify` of that "
        "day (SUBHOUR, HOUR and DAY levels of every hierarchy) against the facts (Q3).",
    ),
    OptionSpec(
        "quality",
        "manifest-rows",
        Severity(),
        "error",
        "Each export chunk, before it is published: the rows of every file in its manifest "
        "equal the fact rows of its interval; error: the chunk is held and tried again at the "
        "next export run (Q3).",
    ),
    # [gim-export] -- GIM "Export Schedule".
    OptionSpec(
        "gim-export",
        "output-directory",
        DirectoryPath(),
        "output",
        "Export folder; relative paths are resolved under GIM_OUTPUT_DIRECTORY.",
    ),
    OptionSpec(
        "gim-export", "days-to-keep-output-files", _days(), "14", "Days exported files are kept."
    ),
    OptionSpec(
        "gim-export",
        "use-export-views",
        _bool,
        "false",
        "Export from the project's export views (readable values, stable names).",
    ),
    OptionSpec(
        "gim-export",
        "chunk-size-seconds",
        Integer(60, 86400, "seconds"),
        "3600",
        "Data time covered by one export chunk.",
    ),
    OptionSpec(
        "gim-export",
        "max-retries",
        Integer(0, 100),
        "3",
        "Retries of a chunk after a transient error.",
    ),
    OptionSpec(
        "gim-export",
        "retry-delay-seconds",
        Integer(0, 3600, "seconds"),
        "30",
        "Delay between retries.",
    ),
    OptionSpec(
        "gim-export",
        "output-files-encoding",
        Encoding(),
        "utf-8",
        "Encoding of exported CSV files.",
    ),
    OptionSpec(
        "gim-export",
        "start-date",
        OptionalDate(),
        "",
        "First data day to export (empty: the oldest data).",
    ),
    OptionSpec(
        "gim-export",
        "thread-pool-size",
        Integer(1, 64, "threads"),
        "4",
        "Chunks or tables exported in parallel.",
    ),
)
#: The value types a site job's option rows may declare (``schedule.spec.OptionKind``).
_KINDS: dict[str, OptionType] = {
    "boolean": _bool,
    "cron": _cron,
    "clock-time": _clock,
    "duration": Duration(),
}
#: The [schedule] options of site jobs (``GIM_JOB_MODULES``): their catalogue rows bring them.
OPTIONS += tuple(
    OptionSpec("schedule", row.name, _KINDS[row.kind], row.default, row.description)
    for spec in JOBS
    for row in spec.options
)

SECTIONS: tuple[str, ...] = tuple(dict.fromkeys(spec.section for spec in OPTIONS))
BY_KEY: dict[tuple[str, str], OptionSpec] = {spec.key: spec for spec in OPTIONS}


def section_names() -> str:
    return ", ".join(f"[{name}]" for name in SECTIONS)


def lookup(section: str, name: str, also: Iterable[str] = ()) -> OptionSpec:
    """The spec of ``[section] name``, or :class:`OptionError` listing what exists. ``also``:
    more names to suggest from (GIM's, on import)."""
    if section not in SECTIONS:
        hint = difflib.get_close_matches(section, SECTIONS, n=1)
        suggestion = f" (did you mean [{hint[0]}]?)" if hint else ""
        raise OptionError(
            f"[{section}] is not an option section{suggestion}; sections are {section_names()}"
        )
    spec = BY_KEY.get((section, name))
    if spec is None:
        names = [s.name for s in OPTIONS if s.section == section]
        hint = difflib.get_close_matches(name, [*names, *also], n=1)
        suggestion = f" (did you mean {hint[0]}?)" if hint else ""
        raise OptionError(
            f"[{section}] {name} is not an option{suggestion}; options of "
            f"[{section}] are {', '.join(names)}"
        )
    return spec


# Defaults must themselves be valid: fail at import, not in production.
for _spec in OPTIONS:
    _spec.parse(_spec.default)
