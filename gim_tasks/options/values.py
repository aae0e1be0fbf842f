"""A complete, typed set of option values: stored ones over defaults.

``Options`` is an immutable value; the scheduler takes one per tick. ``ScheduleOptions`` is
the typed view of ``[schedule]`` the firing engine works on.
"""

from __future__ import annotations

import configparser
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any

from gim_tasks.options.registry import OPTIONS, OptionError, lookup
from gim_tasks.schedule.cron import Cron
from gim_tasks.schedule.etl import EtlGrid

Key = tuple[str, str]


@dataclass(frozen=True)
class Change:
    """Who last changed an option, and when (A1 "Creator")."""

    actor: str
    at: datetime


@dataclass(frozen=True)
class Options:
    texts: Mapping[Key, str]  # effective text of every option
    values: Mapping[Key, Any]  # typed value of every option
    stored: frozenset[Key] = frozenset()  # options set explicitly (not defaults)
    changes: Mapping[Key, Change] = field(default_factory=dict)
    #: Stored values that no longer parse (e.g. after an upgrade); the default is used and the
    #: configuration check reports each as an error.
    invalid: tuple[str, ...] = ()

    @classmethod
    def defaults(cls) -> Options:
        return cls.from_texts({})

    @classmethod
    def from_texts(
        cls,
        stored: Mapping[Key, str],
        changes: Mapping[Key, Change] | None = None,
        strict: bool = False,
    ) -> Options:
        """Options from stored texts over defaults. ``strict``: raise on the first bad stored
        value instead of recording it in ``invalid``."""
        texts: dict[Key, str] = {}
        values: dict[Key, Any] = {}
        invalid: list[str] = []
        for spec in OPTIONS:
            text = stored.get(spec.key, spec.default)
            try:
                values[spec.key] = spec.parse(text)
                texts[spec.key] = text
            except OptionError as error:
                if strict:
                    raise
                invalid.append(f"{error} (stored value ignored; using default '{spec.default}')")
                values[spec.key] = spec.parse(spec.default)
                texts[spec.key] = spec.default
        unknown = [key for key in stored if key not in texts]
        invalid += [f"[{s}] {n} is stored but is not an option (ignored)" for s, n in unknown]
        return cls(
            texts,
            values,
            frozenset(k for k in stored if k in texts),
            dict(changes or {}),
            tuple(invalid),
        )

    def get(self, section: str, name: str) -> Any:
        lookup(section, name)
        return self.values[(section, name)]

    def text(self, section: str, name: str) -> str:
        lookup(section, name)
        return self.texts[(section, name)]

    def with_text(self, section: str, name: str, text: str) -> Options:
        """A copy with one option changed (validated); used to check a change before storing."""
        spec = lookup(section, name)
        spec.parse(text)
        stored = {key: self.texts[key] for key in self.stored}
        stored[spec.key] = text
        return Options.from_texts(stored, self.changes)

    def schedule(self) -> ScheduleOptions:
        return ScheduleOptions.from_options(self)

    def to_ini(self) -> str:
        """Every option as INI text, which ``parse_ini`` reads back to the same options."""
        lines: list[str] = []
        section = None
        for spec in OPTIONS:
            if spec.section != section:
                section = spec.section
                lines += ([""] if lines else []) + [f"[{section}]"]
            lines.append(
                f"# {spec.description} Allowed: {spec.type.allowed}. Default: '{spec.default}'."
            )
            lines.append(f"{spec.name} = {self.texts[spec.key]}")
        return "\n".join(lines) + "\n"


def parse_ini(text: str, source: str = "input") -> dict[Key, str]:
    """Option texts from INI; every problem (syntax, unknown section or option, bad value) is
    collected and raised together as one :class:`OptionError`, so nothing is half-applied."""
    parser = configparser.ConfigParser(
        interpolation=None,
        delimiters=("=",),
        comment_prefixes=("#", ";"),
        empty_lines_in_values=False,
    )
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        parser.read_string(text, source=source)
    except configparser.Error as error:
        raise OptionError(f"{source}: not a valid INI file: {str(error).splitlines()[0]}") from None
    result: dict[Key, str] = {}
    problems: list[str] = []
    for section in parser.sections():
        try:
            lookup(section, "")
        except OptionError as error:
            if "is not an option section" in str(error):
                problems.append(str(error))
                continue
        for name, value in parser.items(section, raw=True):
            try:
                lookup(section, name).parse(value)
                result[(section, name)] = value.strip()
            except OptionError as error:
                problems.append(str(error))
    if problems:
        raise OptionError(
            f"{source}: nothing imported, {len(problems)} problem(s):\n  " + "\n  ".join(problems)
        )
    return result


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

    @classmethod
    def from_options(cls, options: Options) -> ScheduleOptions:
        def get(name: str) -> Any:
            return options.values[("schedule", name)]

        return cls(
            timezone=get("timezone"),
            run_scheduler=get("run-scheduler"),
            etl=EtlGrid(get("etl-start-time"), get("etl-end-time"), get("etl-frequency")),
            run_update_stats=get("run-update-stats"),
            update_stats_schedule=get("update-stats-schedule"),
            run_aggregates=get("run-aggregates"),
            aggregate_schedule=get("aggregate-schedule"),
            aggregate_duration=get("aggregate-duration"),
            run_maintain=get("run-maintain"),
            maintain_start=get("maintain-start-time"),
            run_export=get("run-export"),
            export_schedule=get("export-schedule"),
        )

    @classmethod
    def from_ini(cls, text: str) -> ScheduleOptions:
        return Options.from_texts(parse_ini(text)).schedule()
