"""Re-aggregation parameters (SPEC M4): ``-insertPendingAgg <AGR_SET>:<START>:<END>``.

AGR_SET is ``ALLSETS`` or ``<HIERARCHY>[,<HIERARCHY>…]-<LEVEL>[.Online|.Offline]``; an empty
hierarchy list means all of them (GIM: "or no value at all"). START and END are DATE_TIME
dates ``YYYY-MM-DD``; [decision] both days are included (the seed's one-month example
``2014-05-01:2014-05-31`` then covers all of May; re-aggregating one extra day is harmless).
[decision] Flavors: ``.Online`` rebuilds only the days up to and including today (local),
``.Offline`` only days before today; without a flavor, all days of the range.
Every error names the bad token and what is allowed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from gim_tasks.aggregate.registry import BY_NAME, LEVELS
from gim_tasks.errors import GimError

FLAG = "-insertPendingAgg"


class ParamError(GimError):
    exit_code = 2


@dataclass(frozen=True)
class Reaggregation:
    hierarchies: tuple[str, ...]  # all of them for ALLSETS or an empty list
    level: str  # the lowest level to rebuild (ALLSETS: SUBHOUR)
    flavor: str | None  # Online | Offline | None
    start: date
    end: date  # inclusive

    def as_dict(self) -> dict[str, object]:
        return {
            "hierarchies": list(self.hierarchies),
            "level": self.level,
            "flavor": self.flavor,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Reaggregation:
        """The request as queued (:meth:`as_dict`)."""
        return cls(
            tuple(str(name) for name in data["hierarchies"]),  # type: ignore[attr-defined]
            str(data["level"]),
            None if data.get("flavor") is None else str(data["flavor"]),
            date.fromisoformat(str(data["start"])),
            date.fromisoformat(str(data["end"])),
        )


def _date(token: str, what: str) -> date:
    try:
        if len(token) != 10:
            raise ValueError
        return date.fromisoformat(token)
    except ValueError:
        raise ParamError(f"{FLAG}: {what} '{token}' is not a date YYYY-MM-DD") from None


def parse(text: str) -> Reaggregation:
    """Parse Job_AggregateGIM parameters; raise :class:`ParamError` naming the bad token."""
    tokens = text.split()
    if not tokens:
        raise ParamError(f"no parameters; expected {FLAG} <AGR_SET>:<START>:<END>")
    if tokens[0] != FLAG:
        raise ParamError(f"unknown parameter '{tokens[0]}'; the only parameter is {FLAG}")
    if len(tokens) != 2:
        raise ParamError(f"{FLAG} takes one value <AGR_SET>:<START>:<END>, got {len(tokens) - 1}")
    parts = tokens[1].split(":")
    if len(parts) != 3:
        raise ParamError(f"{FLAG} value '{tokens[1]}' must be <AGR_SET>:<START>:<END>")
    agr_set, start_text, end_text = parts
    start, end = _date(start_text, "START"), _date(end_text, "END")
    if end < start:
        raise ParamError(f"{FLAG}: END {end_text} is before START {start_text}")
    if agr_set == "ALLSETS":
        return Reaggregation(tuple(BY_NAME), "SUBHOUR", None, start, end)
    names, dash, rest = agr_set.rpartition("-")
    if not dash:
        raise ParamError(
            f"{FLAG}: aggregate set '{agr_set}' must be ALLSETS or "
            "<HIERARCHY>[,<HIERARCHY>...]-<LEVEL>[.Online|.Offline]"
        )
    level, _, flavor = rest.partition(".")
    if level not in LEVELS:
        raise ParamError(f"{FLAG}: unknown level '{level}'; levels are {', '.join(LEVELS)}")
    if flavor and flavor not in ("Online", "Offline"):
        raise ParamError(f"{FLAG}: unknown flavor '.{flavor}'; flavors are .Online, .Offline")
    hierarchies = tuple(name for name in names.split(",")) if names else tuple(BY_NAME)
    for name in hierarchies:
        if name not in BY_NAME:
            raise ParamError(
                f"{FLAG}: unknown hierarchy '{name}'; hierarchies are {', '.join(BY_NAME)}"
            )
    return Reaggregation(hierarchies, level, flavor or None, start, end)
