"""The configuration check (SPEC C1, C2): findings with a level and the item each concerns.

Errors block every new run, scheduled or manual (C2); warnings never block. The pure option
rules live here; checks that need servers (schema, reachability, output directory) are added
by ``gim_tasks.runtime.health`` and combined with these.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Literal

from gim_tasks.options.values import Options
from gim_tasks.schedule.etl import DAY_MINUTES, minute_of_day
from gim_tasks.schedule.jobs import MAINTAIN

Level = Literal["error", "warning"]


@dataclass(frozen=True)
class Finding:
    level: Level
    item: str  # what it concerns: "[schedule] maintain-start-time", "Redis", "schema", ...
    message: str
    #: Jobs an error does not block: the one that repairs it (a short calendar spares
    #: Job_MaintainGIM, which fills it).
    spares: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.level}: {self.item}: {self.message}"


@dataclass(frozen=True)
class CheckReport:
    findings: tuple[Finding, ...]

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.level == "error")

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.level == "warning")

    @property
    def ok(self) -> bool:
        return not self.errors

    def refusal(self, job: str | None = None) -> str | None:
        """Why no new run (of ``job``) may start (C2), naming the failing items; None when
        nothing blocks it."""
        errors = [f for f in self.errors if job is None or job not in f.spares]
        if not errors:
            return None
        return "configuration check failed: " + "; ".join(f"{f.item}: {f.message}" for f in errors)

    def merged(self, more: Iterable[Finding]) -> CheckReport:
        return CheckReport(self.findings + tuple(more))


def check_options(options: Options) -> CheckReport:
    """The rules between option values (pure; cheap enough for every scheduler tick)."""
    findings = [Finding("error", "options", problem) for problem in options.invalid]
    schedule = options.schedule()
    etl = schedule.etl
    maintain = schedule.maintain_start.strftime("%H:%M")
    etl_span = f"{etl.start.strftime('%H:%M')}-{etl.end.strftime('%H:%M')}"

    if schedule.run_maintain and etl.covers(schedule.maintain_start):
        findings.append(
            Finding(
                "error",
                "[schedule] maintain-start-time",
                f"{maintain} lies inside the ETL span {etl_span}"
                + (" (round the clock)" if etl.round_the_clock else "")
                + "; choose a time outside it or set run-maintain=false (S4)",
            )
        )

    if not etl.round_the_clock and etl.frequency > etl.span_minutes > 0:
        findings.append(
            Finding(
                "warning",
                "[schedule] etl-frequency",
                f"{etl.frequency} min is longer than the ETL span {etl_span}: one cycle a day",
            )
        )

    elif (gap := etl.short_gap) is not None and etl.frequency <= etl.span_minutes:
        findings.append(
            Finding(
                "warning",
                "[schedule] etl-frequency",
                f"{etl.frequency} min does not divide the ETL span {etl_span}: the final cycle "
                f"begins at {etl.end.strftime('%H:%M')}, {gap} min after the one before (S1)",
            )
        )

    if schedule.run_aggregates and schedule.run_maintain:
        duration = int(schedule.aggregate_duration.total_seconds()) // 60
        target = minute_of_day(schedule.maintain_start)
        opening = next(
            (
                m
                for m in schedule.aggregate_schedule.minutes_of_day
                if duration >= DAY_MINUTES or (target - m) % DAY_MINUTES < duration
            ),
            None,
        )
        if opening is not None:
            findings.append(
                Finding(
                    "warning",
                    "[schedule] aggregate-duration",
                    f"the aggregation window opening at {opening // 60:02d}:{opening % 60:02d} "
                    f"covers maintain-start-time {maintain}: aggregation is paused for maintenance "
                    "and resumed after it (S7)",
                )
            )

    if options.get("gim-etl", "date-time-min-days-ahead") > options.get(
        "gim-etl", "date-time-max-days-ahead"
    ):
        findings.append(
            Finding(
                "error",
                "[gim-etl] date-time-min-days-ahead",
                "is greater than date-time-max-days-ahead; the calendar could never satisfy it",
            )
        )

    keep_facts = options.get("gim-etl", "days-to-keep-facts")
    keep_aggregates = options.get("gim-etl", "days-to-keep-aggregates")
    if keep_aggregates > keep_facts:
        findings.append(
            Finding(
                "warning",
                "[gim-etl] days-to-keep-aggregates",
                f"SUBHOUR and HOUR aggregates are kept {keep_aggregates} days but the facts "
                f"they are rebuilt from only {keep_facts} (days-to-keep-facts): re-aggregation "
                f"of days older than {keep_facts} is refused, since it would empty them for "
                "good (D5); DAY and above are kept forever",
            )
        )

    if not schedule.run_maintain:
        findings.append(
            Finding(
                "warning",
                "[schedule] run-maintain",
                "false: nothing creates partitions or fills DATE_TIME ahead, and nothing "
                "purges expired facts, staging or history (D2); when DATE_TIME runs short the "
                f"check blocks every job but {MAINTAIN} (C2): run it by hand",
            )
        )

    if not schedule.run_scheduler:
        findings.append(
            Finding(
                "warning", "[schedule] run-scheduler", "false: the scheduler launches no job (S9)"
            )
        )
    return CheckReport(tuple(findings))
