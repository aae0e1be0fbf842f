"""GIM option files (issue "Data safety and scale" part 3): options GIM has and gim-tasks does
not use are reported and skipped, [date-time] moves to [gim-etl], Java time zones become the
IANA zone Java means, unknown names are still refused with the closest name suggested."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gim_tasks.options.gim_compat import JAVA_SHORT_IDS, java_zone
from gim_tasks.options.registry import OptionError, lookup
from gim_tasks.options.values import Options, read_ini
from gim_tasks.schedule.localtime import zone

ROOT = Path(__file__).resolve().parents[2]


def readme_sample() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- gim-sample-options -->\n```ini\n(.*?)```", text, re.S)
    assert match, "the README's GIM sample block is missing"
    return match.group(1)


def test_the_readme_sample_reads_with_exactly_its_notes() -> None:
    read = read_ini(readme_sample(), "gim-options.ini")
    assert read.values[("schedule", "timezone")] == "America/Los_Angeles"
    assert read.values[("gim-etl", "date-time-min-days-ahead")] == "120"
    assert ("schedule", "on-demand-migration") not in read.values
    assert len(read.values) == 15
    skipped = [note.split(" is not used")[0] for note in read.notes if "not used" in note]
    assert skipped == [
        "[schedule] on-demand-migration",
        "[gim-etl] aggregation-engine-class-name",
        "[gim-etl] days-to-keep-gim-facts",
        "[gim-etl] partitioning-ahead-range",
        "[date-time] first-day-of-week",
    ]
    assert read.notes[0] == (
        "warning: [schedule] timezone: GIM's (Java's) PST is America/Los_Angeles: stored as "
        "America/Los_Angeles"
    )
    # What the README says the import prints, line for line (its "note: " prefix aside).
    printed = (ROOT / "README.md").read_text().split("`gim config import gim-options.ini` prints:")
    shown = printed[1].split("```")[1].strip().splitlines()
    expected = [n if n.startswith("warning: ") else f"note: {n}" for n in read.notes]
    assert shown[: len(expected)] == expected
    Options.from_texts(read.values, strict=True)  # every value valid together


@pytest.mark.parametrize(
    ("line", "named"),
    [
        ("aggregation-engine-class = x", "did you mean aggregation-engine-class-name?"),
        ("days-to-keep-gim-fact = 3", "did you mean days-to-keep-gim-facts?"),
        ("partitioning-ahead = 3", "did you mean partitioning-ahead-range?"),
    ],
)
def test_unknown_names_are_refused_with_the_closest_known_name(line: str, named: str) -> None:
    with pytest.raises(OptionError, match=re.escape(named)) as caught:
        read_ini(f"[gim-etl]\n{line}\n[schedule]\ntimezone = PST\n", "site.ini")
    assert "nothing imported, 1 problem(s)" in str(caught.value)


def test_unknown_date_time_option_is_refused_naming_what_gim_has_there() -> None:
    with pytest.raises(OptionError, match=r"\[date-time\] date-time-nope is not an option GIM"):
        read_ini("[date-time]\ndate-time-nope = 1\n", "site.ini")


@pytest.mark.parametrize(
    ("java", "iana", "offset_hours"),
    [
        ("GMT+02:00", "Etc/GMT-2", 2),
        ("GMT+2", "Etc/GMT-2", 2),
        ("UTC-05:00", "Etc/GMT+5", -5),
        ("GMT-0500", "Etc/GMT+5", -5),
        ("UTC+14:00", "Etc/GMT-14", 14),
        ("GMT+00:00", "UTC", 0),
        ("EST", "Etc/GMT+5", -5),
        ("MST", "Etc/GMT+7", -7),
        ("HST", "Etc/GMT+10", -10),
    ],
)
def test_java_fixed_offsets_map_to_the_same_fixed_offset(
    java: str, iana: str, offset_hours: int
) -> None:
    mapped = java_zone(java)
    assert mapped is not None and mapped[0] == iana
    for month in (1, 7):  # no daylight saving: the same offset in winter and summer
        offset = datetime(2026, month, 15, 12, tzinfo=UTC).astimezone(zone(iana)).utcoffset()
        assert offset is not None and offset.total_seconds() == offset_hours * 3600


def test_java_short_ids_are_iana_zones_and_pst_keeps_daylight_saving() -> None:
    for name, iana in JAVA_SHORT_IDS.items():
        zone(iana)  # every target exists in this machine's tz database
        assert java_zone(name) is not None
    mapped = java_zone("PST")
    assert mapped is not None and mapped[0] == "America/Los_Angeles"
    winter = datetime(2026, 1, 15, 12, tzinfo=UTC).astimezone(zone(mapped[0])).utcoffset()
    summer = datetime(2026, 7, 15, 12, tzinfo=UTC).astimezone(zone(mapped[0])).utcoffset()
    assert winter is not None and summer is not None and winter != summer  # PST and PDT
    assert java_zone("Europe/Berlin") is None and java_zone("Mars") is None


@pytest.mark.parametrize("text", ["UTC-05:30", "GMT+05:45", "GMT+15", "UTC-13:00"])
def test_offsets_iana_cannot_express_are_refused_naming_what_to_use(text: str) -> None:
    with pytest.raises(OptionError, match=re.escape(f"[schedule] timezone = '{text}'")) as caught:
        read_ini(f"[schedule]\ntimezone = {text}\n", "site.ini")
    assert "no IANA zone" in str(caught.value) or "beyond the offsets" in str(caught.value)


def test_extra_time_zones_are_mapped_one_by_one() -> None:
    read = read_ini("[gim-etl]\ndate-time-extra-time-zones = GMT+02:00, Europe/London, JST\n")
    assert read.values[("gim-etl", "date-time-extra-time-zones")] == (
        "Etc/GMT-2,Europe/London,Asia/Tokyo"
    )
    assert len([n for n in read.notes if n.startswith("warning: ")]) == 2


def test_set_refuses_a_java_id_naming_the_iana_zone() -> None:
    with pytest.raises(OptionError, match="PST is America/Los_Angeles in IANA terms"):
        lookup("schedule", "timezone").parse("PST")
    with pytest.raises(OptionError, match="Asia/Kolkata"):
        lookup("schedule", "timezone").parse("GMT+05:30")
