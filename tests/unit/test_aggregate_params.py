"""Re-aggregation parameters of SPEC M4: every valid form, and malformed input named."""

from __future__ import annotations

from datetime import date

import pytest

from gim_tasks.aggregate.params import ParamError, parse
from gim_tasks.aggregate.registry import BY_NAME, HIERARCHIES, LEVELS, TABLES


@pytest.mark.parametrize(
    ("text", "hierarchies", "level", "flavor", "start", "end"),
    [
        # The seed's examples.
        (
            "-insertPendingAgg ALLSETS:2014-05-01:2014-05-31",
            tuple(BY_NAME),
            "SUBHOUR",
            None,
            date(2014, 5, 1),
            date(2014, 5, 31),
        ),
        (
            "-insertPendingAgg H_QUEUE-HOUR:2014-05-01:2014-05-02",
            ("H_QUEUE",),
            "HOUR",
            None,
            date(2014, 5, 1),
            date(2014, 5, 2),
        ),
        (
            "-insertPendingAgg H_I_AGENT-SUBHOUR.Offline:2014-05-01:2014-05-02",
            ("H_I_AGENT",),
            "SUBHOUR",
            "Offline",
            date(2014, 5, 1),
            date(2014, 5, 2),
        ),
        # Lists, every level, the other flavor, an empty list (all hierarchies), one day.
        (
            "-insertPendingAgg H_AGENT,H_QUEUE_ACC_AGENT-YEAR.Online:2026-01-01:2026-12-31",
            ("H_AGENT", "H_QUEUE_ACC_AGENT"),
            "YEAR",
            "Online",
            date(2026, 1, 1),
            date(2026, 12, 31),
        ),
        (
            "-insertPendingAgg -DAY:2026-03-29:2026-03-29",
            tuple(BY_NAME),
            "DAY",
            None,
            date(2026, 3, 29),
            date(2026, 3, 29),
        ),
        (
            "  -insertPendingAgg   H_CAMPAIGN-QUARTER:2026-01-01:2026-03-31 ",
            ("H_CAMPAIGN",),
            "QUARTER",
            None,
            date(2026, 1, 1),
            date(2026, 3, 31),
        ),
    ],
)
def test_m4_valid_forms(
    text: str, hierarchies: tuple[str, ...], level: str, flavor: str | None, start: date, end: date
) -> None:
    parsed = parse(text)
    assert (parsed.hierarchies, parsed.level, parsed.flavor, parsed.start, parsed.end) == (
        hierarchies,
        level,
        flavor,
        start,
        end,
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no parameters"),
        ("-reaggregate ALLSETS:2014-05-01:2014-05-31", "unknown parameter '-reaggregate'"),
        ("-insertPendingAgg", "takes one value"),
        ("-insertPendingAgg ALLSETS:2014-05-01:2014-05-31 extra", "takes one value"),
        ("-insertPendingAgg ALLSETS:2014-05-01", "must be <AGR_SET>:<START>:<END>"),
        ("-insertPendingAgg H_QUEUES-HOUR:2014-05-01:2014-05-02", "unknown hierarchy 'H_QUEUES'"),
        ("-insertPendingAgg H_QUEUE,,H_AGENT-HOUR:2014-05-01:2014-05-02", "unknown hierarchy ''"),
        ("-insertPendingAgg H_QUEUE-WEEK:2014-05-01:2014-05-02", "unknown level 'WEEK'"),
        ("-insertPendingAgg H_QUEUE-hour:2014-05-01:2014-05-02", "unknown level 'hour'"),
        ("-insertPendingAgg H_QUEUE-HOUR.online:2014-05-01:2014-05-02", "unknown flavor '.online'"),
        ("-insertPendingAgg H_QUEUE:2014-05-01:2014-05-02", "must be ALLSETS or"),
        ("-insertPendingAgg ALLSETS:2014-02-30:2014-03-01", "START '2014-02-30' is not a date"),
        ("-insertPendingAgg ALLSETS:2014-05-01:20140502", "END '20140502' is not a date"),
        ("-insertPendingAgg ALLSETS:2014-05-02:2014-05-01", "END 2014-05-01 is before START"),
    ],
)
def test_m4_malformed_requests_name_the_bad_token(text: str, message: str) -> None:
    with pytest.raises(ParamError) as caught:
        parse(text)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_registry_has_the_13_hierarchies_times_6_levels() -> None:
    assert [h.name for h in HIERARCHIES] == [
        "H_AGENT",
        "H_QUEUE",
        "H_QUEUE_ABN",
        "H_QUEUE_GRP",
        "H_AGENT_GRP",
        "H_AGENT_QUEUE",
        "H_QUEUE_ACC_AGENT",
        "H_ID",
        "H_I_AGENT",
        "H_I_STATE_RSN",
        "H_I_SESS_STATE",
        "H_AGENT_CAMPAIGN",
        "H_CAMPAIGN",
    ]
    assert len(TABLES) == 13 * len(LEVELS) == 78
