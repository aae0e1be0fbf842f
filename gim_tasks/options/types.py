"""Value types of options: each parses the stored text, formats a value back, and says in
words what it allows (used in every refusal)."""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, time, timedelta
from typing import Any, ClassVar
from zoneinfo import ZoneInfoNotFoundError

from gim_tasks.schedule.cron import CronError, parse_cron
from gim_tasks.schedule.localtime import zone

#: Exactly the characters str.strip() removes (str.isspace), for patterns of stripped values.
_SPACE = r"[\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*"
_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})$", re.ASCII)  # ASCII: no other script's digits


class OptionType:
    """Base of option types. ``parse`` raises ``ValueError`` with a short reason."""

    allowed = ""
    #: An ECMA-262 pattern that matches exactly the texts ``parse`` takes, where one can say
    #: it (the API's document states it, issue 32); None: only the code can check.
    pattern: str | None = None
    #: Whether ``parse``'s reasons name the part that is wrong (shown with the allowed form).
    specific: ClassVar[bool] = False

    def parse(self, raw: str) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def format(self, value: Any) -> str:
        return str(value)


@dataclass(frozen=True)
class Boolean(OptionType):
    allowed: str = "true or false"
    pattern: str | None = (
        f"^{_SPACE}([Tt][Rr][Uu][Ee]|[Yy][Ee][Ss]|[Oo][Nn]|1|[Ff][Aa][Ll][Ss][Ee]|[Nn][Oo]|"
        f"[Oo][Ff][Ff]|0){_SPACE}$"
    )

    def parse(self, raw: str) -> bool:
        text = raw.strip().lower()
        if text in ("true", "yes", "on", "1"):
            return True
        if text in ("false", "no", "off", "0"):
            return False
        raise ValueError("not a boolean")

    def format(self, value: Any) -> str:
        return "true" if value else "false"


@dataclass(frozen=True)
class Integer(OptionType):
    minimum: int
    maximum: int
    unit: str = ""

    @property
    def allowed(self) -> str:  # type: ignore[override]
        unit = f" ({self.unit})" if self.unit else ""
        return f"an integer from {self.minimum} to {self.maximum}{unit}"

    def parse(self, raw: str) -> int:
        text = raw.strip()
        if not re.fullmatch(r"[+-]?\d+", text, re.ASCII):
            raise ValueError("not an integer")
        value = int(text)
        if not self.minimum <= value <= self.maximum:
            raise ValueError("out of range")
        return value


@dataclass(frozen=True)
class ClockTime(OptionType):
    allowed: str = "a time of day HH:mm from 00:00 to 23:59"
    pattern: str | None = f"^{_SPACE}([01]?[0-9]|2[0-3]):[0-5][0-9]{_SPACE}$"

    def parse(self, raw: str) -> time:
        match = _CLOCK.match(raw.strip())
        if not match:
            raise ValueError("not HH:mm")
        hours, minutes = int(match[1]), int(match[2])
        if hours > 23 or minutes > 59:
            raise ValueError("out of range")
        return time(hours, minutes)

    def format(self, value: Any) -> str:
        return f"{value.hour:02d}:{value.minute:02d}"


@dataclass(frozen=True)
class Duration(OptionType):
    allowed: str = "a duration HH:mm from 00:01 to 24:00"

    def parse(self, raw: str) -> timedelta:
        match = _CLOCK.match(raw.strip())
        if not match:
            raise ValueError("not HH:mm")
        hours, minutes = int(match[1]), int(match[2])
        value = timedelta(hours=hours, minutes=minutes)
        if minutes > 59 or not timedelta(minutes=1) <= value <= timedelta(hours=24):
            raise ValueError("out of range")
        return value

    def format(self, value: Any) -> str:
        total = int(value.total_seconds()) // 60
        return f"{total // 60:02d}:{total % 60:02d}"


@dataclass(frozen=True)
class CronSchedule(OptionType):
    allowed: str = (
        "a cron of 2 fields 'minute hour' (e.g. '0/10 *', '30 2', '20 0,8,16') or 5 fields "
        "'minute hour day-of-month month day-of-week'"
    )

    def parse(self, raw: str) -> Any:
        try:
            return parse_cron(" ".join(raw.split()))
        except CronError as error:
            raise ValueError(str(error)) from None

    def format(self, value: Any) -> str:
        return str(value.expression)


@dataclass(frozen=True)
class TimeZone(OptionType):
    allowed: str = "an IANA time zone name such as GMT, UTC, Europe/Berlin, America/New_York"

    def parse(self, raw: str) -> str:
        name = raw.strip()
        if not name or name.startswith("/") or ".." in name:
            raise ValueError("not a time zone name")
        try:
            zone(name)
        except (ZoneInfoNotFoundError, ValueError):
            from gim_tasks.options.gim_compat import java_zone

            try:
                mapped = java_zone(name)
            except ValueError as error:
                raise ValueError(f"GIM/Java time zone: {error}") from None
            if mapped is not None:
                raise ValueError(
                    f"GIM/Java time zone: {name} is {mapped[0]} in IANA terms; set {mapped[0]}"
                ) from None
            raise ValueError("unknown time zone") from None
        return name


@dataclass(frozen=True)
class TimeZoneList(OptionType):
    allowed: str = "comma-separated IANA time zone names, or empty for none"

    def parse(self, raw: str) -> tuple[str, ...]:
        names = [part.strip() for part in raw.split(",") if part.strip()]
        for name in names:
            TimeZone().parse(name)
        if len(set(names)) != len(names):
            raise ValueError("a time zone is listed twice")
        return tuple(names)

    def format(self, value: Any) -> str:
        return ",".join(value)


@dataclass(frozen=True)
class JobCounts(OptionType):
    """``JOB=N, JOB=N``: a count per job of the catalogue (P5's consecutive failures)."""

    allowed: str = "comma-separated JOB=N with a job name and N from 1 to 100, or empty for none"
    specific: ClassVar[bool] = True
    zero: bool = False  # N may be 0 (B2's weights: 0 takes a job out of the pool)

    def parse(self, raw: str) -> tuple[tuple[str, int], ...]:
        from gim_tasks.schedule.jobs import JOB_NAMES

        pairs: dict[str, int] = {}
        for part in (p.strip() for p in raw.split(",")):
            if not part:
                continue
            job, _, count = part.partition("=")
            job = job.strip()
            if job not in JOB_NAMES:
                raise ValueError(f"'{job}' is not a job; jobs are {', '.join(JOB_NAMES)}")
            low = 0 if self.zero else 1
            if not count.strip().isdigit() or not low <= int(count) <= 100:
                raise ValueError(f"{job}: '{count.strip()}' is not a count from {low} to 100")
            if job in pairs:
                raise ValueError(f"{job} is listed twice")
            pairs[job] = int(count)
        return tuple(pairs.items())

    def format(self, value: Any) -> str:
        return ", ".join(f"{job}={count}" for job, count in value)


_SPAN = re.compile(r"^(?:(\d{1,4})h)?(?:(\d{1,5})m)?(?:(\d{1,6})s)?$", re.ASCII)
LIMIT_ACTIONS = ("warn", "stop")


def span_seconds(text: str) -> int:
    """``2h``, ``20m``, ``90s``, ``1h30m``: whole seconds; ValueError naming the text."""
    match = _SPAN.match(text.strip())
    if not text.strip() or not match:
        raise ValueError(f"'{text.strip()}' is not a duration like 2h, 20m, 90s or 1h30m")
    hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def span_text(seconds: float) -> str:
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return "".join(f"{n}{u}" for n, u in ((hours, "h"), (minutes, "m"), (secs, "s")) if n) or "0s"


@dataclass(frozen=True)
class JobLimits(OptionType):
    """``JOB=DURATION[:warn|:stop], ...``: L1's time limit per job (default action: stop).
    Continuous aggregation has none: its window is its limit (S7)."""

    allowed: str = (
        "comma-separated JOB=DURATION or JOB=DURATION:warn or JOB=DURATION:stop (DURATION "
        "like 2h, 20m, 90s, 1h30m; from 10s to 7 days; default stop), any job but the "
        "continuous aggregation, or empty"
    )
    specific: ClassVar[bool] = True

    def parse(self, raw: str) -> tuple[tuple[str, int, str], ...]:
        from gim_tasks.schedule.jobs import AGGREGATE, JOB_NAMES

        limits: dict[str, tuple[int, str]] = {}
        for part in (p.strip() for p in raw.split(",")):
            if not part:
                continue
            job, _, rest = part.partition("=")
            job = job.strip()
            if job not in JOB_NAMES:
                raise ValueError(f"'{job}' is not a job; jobs are {', '.join(JOB_NAMES)}")
            if job == AGGREGATE:
                raise ValueError(f"{job} has no time limit: its aggregation window is its limit")
            span, _, action = rest.partition(":")
            action = action.strip() or "stop"
            if action not in LIMIT_ACTIONS:
                raise ValueError(f"{job}: '{action}' is not warn or stop")
            seconds = span_seconds(span)
            if not 10 <= seconds <= 7 * 86400:
                raise ValueError(f"{job}: {span.strip()} is not from 10s to 7 days")
            if job in limits:
                raise ValueError(f"{job} is listed twice")
            limits[job] = (seconds, action)
        return tuple((job, seconds, action) for job, (seconds, action) in limits.items())

    def format(self, value: Any) -> str:
        return ", ".join(f"{job}={span_text(seconds)}:{action}" for job, seconds, action in value)


@dataclass(frozen=True)
class Factor(OptionType):
    """A multiplier with one decimal, e.g. 2 or 1.5."""

    minimum: float
    maximum: float

    @property
    def allowed(self) -> str:  # type: ignore[override]
        return f"a number from {self.minimum:g} to {self.maximum:g}, e.g. 2 or 1.5"

    def parse(self, raw: str) -> float:
        text = raw.strip()
        if not re.fullmatch(r"\d{1,3}(\.\d)?", text, re.ASCII):
            raise ValueError("not a number like 2 or 1.5")
        value = float(text)
        if not self.minimum <= value <= self.maximum:
            raise ValueError("out of range")
        return value

    def format(self, value: Any) -> str:
        return f"{value:g}"


def named_values(
    parts: Iterable[str], names: Iterable[str], unknown: str, skip_blank: bool = False
) -> list[tuple[str, str]]:
    """``NAME=VALUE`` parts as (name as declared, value text), each name one of ``names``
    (any case) and given once; ``unknown`` (with ``{part}``) is the refusal of a part that
    names none (a blank part too, unless ``skip_blank``)."""
    known = {name.lower(): name for name in names}
    found: dict[str, str] = {}
    for part in (piece.strip() for piece in parts):
        if not part and skip_blank:
            continue
        given, equals, value = (text.strip() for text in part.partition("="))
        name = known.get(given.lower())
        if name is None or not equals:
            raise ValueError(unknown.format(part=part))
        if name in found:
            raise ValueError(f"{name} is given twice")
        found[name] = value
    return list(found.items())


@dataclass(frozen=True)
class ReadyByValue:
    """Q1's ready-by: a local time of the next morning, overridden per data category."""

    default: time
    overrides: tuple[tuple[str, time], ...] = ()

    def of(self, category: str | None) -> time:
        return dict(self.overrides).get(category or "", self.default)

    def times(self) -> tuple[time, ...]:
        return (self.default, *(at for _, at in self.overrides))


@dataclass(frozen=True)
class ReadyBy(OptionType):
    """``HH:mm`` then ``CATEGORY=HH:mm`` overrides: ``07:00, Export=08:30`` (Q1)."""

    categories: tuple[str, ...] = ()
    specific: ClassVar[bool] = True

    @property
    def allowed(self) -> str:  # type: ignore[override]
        return (
            "a time of day HH:mm, then optionally comma-separated CATEGORY=HH:mm overrides "
            f"with CATEGORY one of {', '.join(self.categories)} (e.g. 07:00, Export=08:30)"
        )

    def parse(self, raw: str) -> ReadyByValue:
        first, *rest = (part.strip() for part in raw.split(","))
        try:
            default = ClockTime().parse(first)
        except ValueError:
            raise ValueError(f"'{first}' is not a time of day HH:mm (the default)") from None
        overrides: dict[str, time] = {}
        unknown = "'{part}' is not CATEGORY=HH:mm with a known category"
        for name, at in named_values(rest, self.categories, unknown):
            try:
                overrides[name] = ClockTime().parse(at)
            except ValueError:
                raise ValueError(f"'{at}' for {name} is not a time of day HH:mm") from None
        return ReadyByValue(default, tuple(overrides.items()))

    def format(self, value: Any) -> str:
        return ", ".join(
            [f"{value.default:%H:%M}", *(f"{name}={at:%H:%M}" for name, at in value.overrides)]
        )


@dataclass(frozen=True)
class Severity(OptionType):
    """Q3: what a failed quality check does: nothing (off), show itself (warn), or hold the
    export it judges and open ``check-failed`` (error)."""

    allowed: str = "off, warn or error"
    pattern: str | None = f"^{_SPACE}([Oo][Ff][Ff]|[Ww][Aa][Rr][Nn]|[Ee][Rr][Rr][Oo][Rr]){_SPACE}$"

    def parse(self, raw: str) -> str:
        text = raw.strip().lower()
        if text not in ("off", "warn", "error"):
            raise ValueError("not off, warn or error")
        return text


@dataclass(frozen=True)
class PercentRange(OptionType):
    """``LOW-HIGH``: bounds in percent of a reference, LOW below 100, HIGH above it."""

    allowed: str = (
        "LOW-HIGH in percent of the reference, LOW from 0 to 99 and HIGH from 101 to 10000, "
        "e.g. 50-200"
    )
    pattern: str | None = f"^{_SPACE}[0-9]{{1,2}} *- *[0-9]{{3,5}}{_SPACE}$"

    def parse(self, raw: str) -> tuple[int, int]:
        match = re.fullmatch(r"(\d{1,2}) *- *(\d{3,5})", raw.strip(), re.ASCII)
        if not match:
            raise ValueError("not LOW-HIGH like 50-200")
        low, high = int(match[1]), int(match[2])
        if not (0 <= low <= 99 and 101 <= high <= 10000):
            raise ValueError("out of range")
        return low, high

    def format(self, value: Any) -> str:
        return f"{value[0]}-{value[1]}"


@dataclass(frozen=True)
class JobRetries(JobCounts):
    """``JOB=N``: L3's retries per job; the continuous aggregation has none (its window
    restarts it within a tick, S7)."""

    allowed: str = (
        "comma-separated JOB=N with a job name (not the continuous aggregation) and N from 1 "
        "to 100, or empty for none"
    )

    def parse(self, raw: str) -> tuple[tuple[str, int], ...]:
        from gim_tasks.schedule.jobs import AGGREGATE

        pairs = super().parse(raw)
        if any(job == AGGREGATE for job, _ in pairs):
            raise ValueError(
                f"{AGGREGATE} is not retried: it runs continuously and its window restarts it "
                "within a tick (S7)"
            )
        return pairs


@dataclass(frozen=True)
class OptionalDate(OptionType):
    allowed: str = "a date YYYY-MM-DD, or empty for none"

    def parse(self, raw: str) -> date | None:
        text = raw.strip()
        if not text:
            return None
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            raise ValueError("not YYYY-MM-DD")
        return date.fromisoformat(text)

    def format(self, value: Any) -> str:
        return "" if value is None else value.isoformat()


@dataclass(frozen=True)
class Encoding(OptionType):
    allowed: str = "a Python codec name such as utf-8, utf-16, latin-1, cp1252"

    def parse(self, raw: str) -> str:
        name = raw.strip()
        try:
            return codecs.lookup(name).name if name else _raise("empty")
        except LookupError:
            raise ValueError("unknown encoding") from None


@dataclass(frozen=True)
class DirectoryPath(OptionType):
    allowed: str = "a directory path; a relative one is resolved under GIM_OUTPUT_DIRECTORY"

    def parse(self, raw: str) -> str:
        text = raw.strip()
        if not text or "\x00" in text:
            raise ValueError("empty path")
        return text


def _raise(reason: str) -> str:
    raise ValueError(reason)


@dataclass(frozen=True)
class FreshnessMinutes(OptionType):
    """Minutes per data category (``ETL=60, Aggregation=120``), optionally per fact table or
    aggregate level (``campaign_attempt_fact=0``); 0 or left out: not judged."""

    categories: tuple[str, ...] = ()
    tables: tuple[str, ...] = ()
    specific: ClassVar[bool] = True

    @property
    def allowed(self) -> str:  # type: ignore[override]
        return (
            f"comma-separated NAME=MINUTES (0 to 10080; 0: not judged), NAME a category "
            f"({', '.join(self.categories)}), a fact table or an aggregate level "
            f"({', '.join(self.tables)}), or empty for none"
        )

    def parse(self, raw: str) -> dict[str, int]:
        result: dict[str, int] = {}
        unknown = "'{part}' does not name a category, fact table or level"
        parts = [piece.strip() for piece in raw.split(",")]
        declared = (*self.categories, *self.tables)
        for name, minutes in named_values(parts, declared, unknown, skip_blank=True):
            if not minutes.isdigit() or not 0 <= int(minutes) <= 10080:
                raise ValueError(f"'{minutes}' minutes for {name} is not 0 to 10080")
            result[name] = int(minutes)
        return result

    def format(self, value: Any) -> str:
        return ", ".join(f"{name}={minutes}" for name, minutes in value.items())
