"""The ``[schedule]`` section, typed: the input of the pure scheduling core (engine, plan,
admission). It lives here, not in :mod:`gim_tasks.options`, so the core imports nothing from
the option store, the runtime, the web or the database (issue 33); the store builds it with
:meth:`ScheduleOptions.from_values`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import time, timedelta
from typing import Any

from gim_tasks.schedule.cron import Cron
from gim_tasks.schedule.etl import EtlGrid


@dataclass(frozen=True)
class ScheduleOptions:
    """The ``[schedule]`` section, typed, as the firing engine reads it."""

    timezone: str
    run_scheduler: bool
    etl: EtlGrid
    run_update_stats: bool
    update_stats_schedule: Cron
    run_aggregates: bool
    aggregate_schedule: Cron
    aggregate_duration: timedelta
    run_maintain: bool
    maintain_start: time
    run_export: bool
    export_schedule: Cron
    #: Every [schedule] option's value by name, the built-in jobs' above included: a site
    #: job's catalogue row reads its own options through :meth:`value`.
    values: tuple[tuple[str, Any], ...] = ()

    def value(self, name: str) -> Any:
        """The value of the ``[schedule]`` option ``name`` (KeyError for an unknown one)."""
        for key, value in self.values:
            if key == name:
                return value
        raise KeyError(f"[schedule] {name} is not an option")

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> ScheduleOptions:
        """From every ``[schedule]`` option's parsed value, by option name."""
        return cls(
            timezone=values["timezone"],
            run_scheduler=values["run-scheduler"],
            etl=EtlGrid(values["etl-start-time"], values["etl-end-time"], values["etl-frequency"]),
            run_update_stats=values["run-update-stats"],
            update_stats_schedule=values["update-stats-schedule"],
            run_aggregates=values["run-aggregates"],
            aggregate_schedule=values["aggregate-schedule"],
            aggregate_duration=values["aggregate-duration"],
            run_maintain=values["run-maintain"],
            maintain_start=values["maintain-start-time"],
            run_export=values["run-export"],
            export_schedule=values["export-schedule"],
            values=tuple(sorted(values.items())),
        )
