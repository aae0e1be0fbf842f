"""A complete, typed set of option values: stored ones over defaults.

``Options`` is an immutable value; the scheduler takes one per tick. ``ScheduleOptions`` is
the typed view of ``[schedule]`` the firing engine works on.
"""

from __future__ import annotations

import configparser
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gim_tasks.options.registry import OPTIONS, OptionError, lookup
from gim_tasks.options.types import TimeZone, TimeZoneList
from gim_tasks.schedule.options import ScheduleOptions

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
        return ScheduleOptions.from_values(
            {name: value for (section, name), value in self.values.items() if section == "schedule"}
        )

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


@dataclass(frozen=True)
class IniOptions:
    """What an INI text sets, and the notes for the operator: GIM options not used here,
    ``[date-time]`` options moved to ``[gim-etl]``, Java time zones mapped (see
    :mod:`gim_tasks.options.gim_compat`)."""

    values: dict[Key, str]
    notes: tuple[str, ...] = ()


def read_ini(text: str, source: str = "input") -> IniOptions:
    """Option texts from INI, GIM option files included; every problem (syntax, unknown
    section or option, bad value) is collected and raised together as one
    :class:`OptionError`, so nothing is half-applied."""
    from gim_tasks.options import gim_compat

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
    notes: list[str] = []
    for section in parser.sections():
        gim_only = section in gim_compat.GIM_SECTIONS
        if not gim_only:
            try:
                lookup(section, "")
            except OptionError as error:
                if "is not an option section" in str(error):
                    problems.append(str(error))
                    continue
        for name, value in parser.items(section, raw=True):
            key: Key = (section, name)
            if key in gim_compat.UNUSED:
                why = gim_compat.UNUSED[key]
                notes.append(f"[{section}] {name} is not used by gim-tasks ({why}); not stored")
                continue
            if key in gim_compat.MOVED:
                key = gim_compat.MOVED[key]
                notes.append(f"[{section}] {name} is [{key[0]}] {key[1]} in gim-tasks: imported so")
            try:
                if key[0] in gim_compat.GIM_SECTIONS:
                    raise OptionError(
                        f"[{section}] {name} is not an option GIM has in [{section}]; known "
                        f"there: {', '.join(gim_compat.gim_names(section))}"
                    )
                spec = lookup(*key, also=gim_compat.gim_names(key[0]))
                text_value = value.strip()
                if isinstance(spec.type, TimeZone | TimeZoneList):
                    text_value = _iana_zones(spec.section, spec.name, text_value, notes)
                spec.parse(text_value)
                result[key] = text_value
            except OptionError as error:
                problems.append(str(error))
            except ValueError as error:  # a Java zone IANA cannot express
                problems.append(f"[{section}] {name} = '{value.strip()}' is invalid: {error}")
    if problems:
        raise OptionError(
            f"{source}: nothing imported, {len(problems)} problem(s):\n  " + "\n  ".join(problems)
        )
    return IniOptions(result, tuple(notes))


def _iana_zones(section: str, name: str, text: str, notes: list[str]) -> str:
    """``text`` with every Java time-zone ID replaced by its IANA zone, noting each."""
    from gim_tasks.options.gim_compat import java_zone

    zones = []
    for part in (p.strip() for p in text.split(",")):
        mapped = java_zone(part) if part else None
        if mapped is not None:
            notes.append(f"warning: [{section}] {name}: {mapped[1]}")
            part = mapped[0]
        zones.append(part)
    return ",".join(zones)


def parse_ini(text: str, source: str = "input") -> dict[Key, str]:
    """The option texts of :func:`read_ini` (notes dropped)."""
    return read_ini(text, source).values


def schedule_from_ini(text: str) -> ScheduleOptions:
    """The ``[schedule]`` options of INI text, over the defaults (tests, benches)."""
    return Options.from_texts(parse_ini(text)).schedule()
