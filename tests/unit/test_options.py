"""The option registry, INI import/export and the pure configuration check (SPEC §2, C1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gim_tasks.cli.config import reference_markdown
from gim_tasks.options.check import check_options
from gim_tasks.options.registry import OPTIONS, OptionError, lookup
from gim_tasks.options.values import Options, parse_ini

ROOT = Path(__file__).resolve().parents[2]


def test_every_option_has_type_default_description_and_valid_default() -> None:
    assert len({spec.key for spec in OPTIONS}) == len(OPTIONS)
    for spec in OPTIONS:
        assert spec.description and spec.type.allowed
        spec.parse(spec.default)


@pytest.mark.parametrize(
    ("section", "name", "value", "allowed"),
    [
        ("schedule", "etl-frequency", "0", "an integer from 1 to 1440 (minutes)"),
        ("schedule", "etl-frequency", "ten", "an integer from 1 to 1440"),
        ("schedule", "etl-start-time", "24:00", "a time of day HH:mm"),
        ("schedule", "etl-start-time", "6.30", "a time of day HH:mm"),
        ("schedule", "aggregate-duration", "00:00", "a duration HH:mm from 00:01 to 24:00"),
        ("schedule", "run-scheduler", "maybe", "true or false"),
        ("schedule", "timezone", "Mars/Olympus", "an IANA time zone name"),
        ("schedule", "update-stats-schedule", "0/10", "a cron of 2 fields"),
        ("gim-export", "output-files-encoding", "klingon-8", "a Python codec name"),
        ("gim-export", "start-date", "2026-13-01", "a date YYYY-MM-DD"),
        ("gim-export", "thread-pool-size", "65", "an integer from 1 to 64"),
    ],
)
def test_invalid_value_names_section_option_value_and_allowed(
    section: str, name: str, value: str, allowed: str
) -> None:
    with pytest.raises(OptionError) as caught:
        lookup(section, name).parse(value)
    message = str(caught.value)
    assert message.startswith(f"[{section}] {name} = '{value}' is invalid")
    assert allowed in message


def test_cron_error_detail_is_kept() -> None:
    detail = r"\(cron '60 \*': minute field '60' is not valid; allowed: .* with values 0-59\)"
    with pytest.raises(OptionError, match=detail):
        lookup("schedule", "export-schedule").parse("60 *")


def test_unknown_section_and_option_suggest_the_right_one() -> None:
    with pytest.raises(OptionError, match=r"did you mean \[schedule\]"):
        lookup("schedul", "timezone")
    with pytest.raises(OptionError, match="did you mean etl-frequency"):
        lookup("schedule", "etl-frequncy")


def test_ini_export_import_round_trip() -> None:
    options = Options.defaults().with_text("schedule", "timezone", "America/New_York")
    again = Options.from_texts(parse_ini(options.to_ini()))
    assert again.texts == options.texts


def test_ini_import_collects_every_problem_and_accepts_nothing() -> None:
    text = "[schedule]\netl-frequency = 0\nrun-maintain = true\n[gim-exprot]\nx = 1\n"
    with pytest.raises(OptionError) as caught:
        parse_ini(text, "site.ini")
    message = str(caught.value)
    assert message.startswith("site.ini: nothing imported, 2 problem(s)")
    assert "etl-frequency" in message and "[gim-exprot] is not an option section" in message
    with pytest.raises(OptionError, match="not a valid INI file"):
        parse_ini("etl-frequency = 5\n", "flat.ini")


#: On the defaults: SUBHOUR and HOUR aggregates (800 days) outlive their facts (400): D5.
KEEP = ("warning", "[gim-etl] days-to-keep-aggregates")


def finding_items(options: Options) -> list[tuple[str, str]]:
    return [(f.level, f.item) for f in check_options(options).findings]


def test_d5_aggregates_kept_longer_than_their_facts_and_no_maintenance_are_warnings() -> None:
    defaults = Options.defaults()
    assert finding_items(defaults) == [KEEP]
    (finding,) = check_options(defaults).findings
    assert "kept 800 days" in finding.message and "only 400 (days-to-keep-facts)" in finding.message
    assert "(D5)" in finding.message
    equal = defaults.with_text("gim-etl", "days-to-keep-aggregates", "400")
    assert finding_items(equal) == []
    unmaintained = equal.with_text("schedule", "run-maintain", "false")
    assert finding_items(unmaintained) == [("warning", "[schedule] run-maintain")]
    assert check_options(unmaintained).ok  # warnings never block (C2)


def test_c1_maintain_start_inside_etl_span_is_an_error() -> None:
    options = Options.defaults().with_text("schedule", "maintain-start-time", "23:00")
    assert ("error", "[schedule] maintain-start-time") in finding_items(options)
    report = check_options(options)
    assert report.refusal() is not None and "[schedule] maintain-start-time" in report.refusal()
    off = options.with_text("schedule", "run-maintain", "false")
    assert finding_items(off) == [KEEP, ("warning", "[schedule] run-maintain")]


def test_c1_round_the_clock_etl_leaves_no_room_for_maintenance() -> None:
    options = Options.defaults().with_text("schedule", "etl-end-time", "06:30")
    assert ("error", "[schedule] maintain-start-time") in finding_items(options)


def test_c1_aggregation_window_covering_maintenance_is_a_warning() -> None:
    options = (
        Options.defaults()
        .with_text("schedule", "run-aggregates", "true")
        .with_text("schedule", "aggregate-duration", "24:00")
    )
    assert finding_items(options) == [("warning", "[schedule] aggregate-duration"), KEEP]
    assert check_options(options).ok  # warnings never block (C2)
    sample = Options.defaults().with_text("schedule", "run-aggregates", "true")
    assert finding_items(sample) == [KEEP]  # 04:00 + 23:00 ends exactly at 03:00


def test_c1_other_rules() -> None:
    calendar = (
        Options.defaults()
        .with_text("gim-etl", "date-time-min-days-ahead", "400")
        .with_text("gim-etl", "date-time-max-days-ahead", "300")
    )
    assert ("error", "[gim-etl] date-time-min-days-ahead") in finding_items(calendar)
    short = (
        Options.defaults()
        .with_text("schedule", "etl-start-time", "08:00")
        .with_text("schedule", "etl-end-time", "08:30")
        .with_text("schedule", "etl-frequency", "60")
    )
    assert ("warning", "[schedule] etl-frequency") in finding_items(short)
    paused = Options.defaults().with_text("schedule", "run-scheduler", "false")
    assert finding_items(paused) == [KEEP, ("warning", "[schedule] run-scheduler")]


def test_bad_stored_value_falls_back_to_default_and_is_an_error() -> None:
    options = Options.from_texts(
        {("schedule", "etl-frequency"): "0", ("schedule", "retired-option"): "1"}
    )
    assert options.get("schedule", "etl-frequency") == 30
    assert [f.level for f in check_options(options).findings] == ["error", "error", "warning"]


def test_readme_option_reference_is_the_generated_one() -> None:
    readme = (ROOT / "README.md").read_text()
    assert reference_markdown() in readme, "regenerate with: gim config reference"


@pytest.mark.parametrize("hour", range(24))
def test_demo_options_are_valid_and_pass_the_check_at_any_hour(hour: int) -> None:
    from datetime import UTC, datetime

    from devtools.demo import demo_options

    now = datetime(2026, 11, 22, hour, 58, tzinfo=UTC)
    options = Options.from_texts(parse_ini(demo_options(now)), strict=True)
    report = check_options(options)
    assert report.ok, report.findings
    schedule = options.schedule()
    assert schedule.etl.frequency == 1 and schedule.run_aggregates and schedule.run_export
