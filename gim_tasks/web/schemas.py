"""The API's contract (issue 23): every input's constraints and every answer's shape, declared
so that ``/api/openapi.json`` says what the API accepts and returns.

The response models here are declared in the document but the routes return plain data
(:mod:`gim_tasks.web.views`): the schema-driven test (``tests/integration/test_api_contract.py``)
then checks real answers against the document, instead of the models shaping the answers to fit.
Models forbid extra properties, so a field added to an answer without its declaration fails
that test, and a field removed fails the contract snapshot test (README "API changes").
"""

from __future__ import annotations

import re
from datetime import date as datetime_date
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from gim_tasks.lifecycle import CONDITIONS, RUN_STATES, STOP_KINDS, VERDICTS
from gim_tasks.monitor.timeline import FIRST_YEAR, LAST_YEAR
from gim_tasks.options.registry import OPTIONS
from gim_tasks.schedule.jobs import AGGREGATE, CATEGORIES, JOB_NAMES

#: Largest id PostgreSQL's bigint holds: larger path ids are a 422, never a 500.
MAX_ID = 2**63 - 1

# Enumerations, built from the registries the code checks against, so the document cannot
# drift from them. (StrEnum members compare equal to their text.)
JobName = StrEnum("JobName", {name: name for name in JOB_NAMES})  # type: ignore[misc]
Category = StrEnum("Category", {name: name for name in CATEGORIES})  # type: ignore[misc]
RunState = StrEnum("RunState", {name: name for name in RUN_STATES})  # type: ignore[misc]
StopKindName = StrEnum("StopKindName", {name: name for name in STOP_KINDS})  # type: ignore[misc]
OptionSection = StrEnum(  # type: ignore[misc]
    "OptionSection", {name: name for name in dict.fromkeys(spec.section for spec in OPTIONS)}
)
OptionName = StrEnum(  # type: ignore[misc]
    "OptionName", {name: name for name in sorted({spec.name for spec in OPTIONS})}
)
#: lifecycle.Trigger's values
Trigger = Literal["scheduled", "manual", "forced", "restart", "retry", "backfill"]

#: Days the plan and the Timeline take (timeline.FIRST_YEAR to LAST_YEAR: 1970 to 2999), stated
#: in the document (issue 32); the patterns spell the same range.
DAY_PATTERN = r"^(19[7-9][0-9]|2[0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"
#: A day, a local time of day, or an ISO instant with its offset (the ledger's from and to).
WHEN_PATTERN = (
    DAY_PATTERN[:-1] + r"(T([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?"
    r"(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])?)?$"
)


#: What the date patterns mean, for their refusals (a regular expression is no message).
PATTERN_WORDS = {
    DAY_PATTERN: f"a day YYYY-MM-DD from {FIRST_YEAR} to {LAST_YEAR}",
    WHEN_PATTERN: f"a day YYYY-MM-DD, a local time YYYY-MM-DDTHH:MM[:SS] or an ISO instant "
    f"with its offset (2026-11-30T08:00:00+00:00), {FIRST_YEAR} to {LAST_YEAR}",
}


def _day_text(value: Any) -> Any:
    """A body's day is the text YYYY-MM-DD of a day from 1970 to 2999, nothing else: pydantic
    would also take a number (Unix time) or a midnight date-time."""
    if isinstance(value, datetime_date) or (
        isinstance(value, str) and re.fullmatch(DAY_PATTERN, value)
    ):
        return value
    raise ValueError(f"a day YYYY-MM-DD from {FIRST_YEAR} to {LAST_YEAR}, not {value!r}")


#: A day in a request body; anything else is a 422.
BodyDay = Annotated[
    datetime_date,
    Field(json_schema_extra={"pattern": DAY_PATTERN}),
    BeforeValidator(_day_text),
]


class Closed(BaseModel):
    """Answers declare every property: a new one must be declared, and clients see it."""

    model_config = ConfigDict(extra="forbid")


# ----- errors ------------------------------------------------------------------------------------


class ErrorBody(Closed):
    error: str = Field(description="What is wrong and, where it applies, what is allowed.")


class FieldProblem(Closed):
    field: str = Field(description="Where: 'query.limit', 'path.run_id', 'job' (body), ...")
    message: str


class ValidationErrorBody(Closed):
    error: str = Field(description="Every problem in one line.")
    details: list[FieldProblem] = Field(description="One entry per bad field.")


#: What each error status means on this API (the descriptions in the document).
ERRORS: dict[int, tuple[type[BaseModel], str]] = {
    400: (ErrorBody, "A value outside its schema that only the code checks."),
    401: (ErrorBody, "No credentials, or an unknown, expired or revoked token."),
    403: (ErrorBody, "The caller's role may not do this, or a session call lacks X-CSRF-Token."),
    404: (ErrorBody, "The run, subscription, option or recipient does not exist."),
    409: (ErrorBody, "Refused by the current state: the rules (M0) or the object's state."),
    413: (ErrorBody, "The request body is larger than 64 KiB."),
    422: (ValidationErrorBody, "A parameter or body field is outside its schema."),
}


#: How an operation's 400 is described: only values its schema cannot check get one (issue 32;
#: the contract test lets a schema-valid request get a 400 only where the document says so).
CANNOT_CHECK = "A value the schema cannot check: "


def errors(*codes: int, unchecked: str = "") -> dict[int | str, dict[str, Any]]:
    """The ``responses`` of an operation: the given error statuses with their body schema.
    ``unchecked``: what the operation's 400 refuses that its schema cannot state."""
    described: dict[int | str, dict[str, Any]] = {
        code: {"model": ERRORS[code][0], "description": ERRORS[code][1]} for code in sorted(codes)
    }
    if unchecked:
        described[400]["description"] = CANNOT_CHECK + unchecked
    return described


def csv_pattern(values: tuple[str, ...]) -> str:
    """A pattern for one of ``values`` or several, comma-separated. (The values are words,
    spaces and hyphens: no escaping, which ECMA-262 patterns would refuse for a space.)"""
    assert all(v.replace(" ", "").replace("-", "").isalnum() for v in values), values
    one = "(" + "|".join(values) + ")"
    return f"^{one}(,{one})*$"


def readable(error: Any) -> str:
    """A validation error's message; a comma-separated list that does not match names what
    is allowed instead of quoting the pattern."""
    pattern = (error.get("ctx") or {}).get("pattern", "")
    if error.get("type") == "string_pattern_mismatch" and pattern in PATTERN_WORDS:
        return f"'{error.get('input')}' is not {PATTERN_WORDS[pattern]}"
    if error.get("type") == "string_pattern_mismatch" and pattern.startswith("^("):
        allowed = pattern[2:].split(")", 1)[0].split("|")
        got = error.get("input")
        return f"'{got}' is not one or several (comma-separated) of {', '.join(allowed)}"
    return str(error["msg"])


def ok(model: Any, description: str, code: int = 200) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": model, "description": description}}


# ----- requests ----------------------------------------------------------------------------------


class RunRequest(Closed):
    """``params`` only for Job_AggregateGIM: any other job takes none (blank)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "if": {"properties": {"job": {"const": AGGREGATE}}, "required": ["job"]},
            "else": {"properties": {"params": {"pattern": r"^\s*$"}}},
        },
    )

    job: JobName = Field(description="The job to run.")
    params: str = Field(
        default="",
        max_length=2000,
        description=(
            f"{AGGREGATE} only: '-insertPendingAgg <AGR_SET>:<START>:<END>' (M4); a "
            "malformed value is a 400 naming the bad token; other jobs take none."
        ),
    )
    force: bool = Field(default=False, description="Admin only: force a non-manual job (M7).")


class OptionValue(Closed):
    value: str = Field(
        max_length=2000,
        description="The new value; its allowed values are in GET /api/options ('allowed').",
    )


class Subscription(Closed):
    """At least one of on_success and on_error is true."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "not": {
                "required": ["on_success", "on_error"],
                "properties": {"on_success": {"const": False}, "on_error": {"const": False}},
            }
        },
    )

    job: JobName
    recipient: str = Field(
        min_length=1,
        max_length=320,
        description="A user name (with an e-mail address) or an e-mail address.",
    )
    on_success: bool = True
    on_error: bool = True

    @model_validator(mode="after")
    def some_event(self) -> Subscription:
        if not (self.on_success or self.on_error):
            raise ValueError("choose on_success, on_error or both")
        return self


Reason = Annotated[
    str,
    Field(
        min_length=1,
        max_length=500,
        pattern=r"\S",
        description="Why (required; shown with every held firing).",
    ),
]


class PauseRequest(Closed):
    reason: Reason
    until: AwareDatetime | None = Field(
        default=None, description="Resume at this instant (with its offset); null: never."
    )
    stop: bool = Field(
        default=False,
        description="Stop the running run now (stop kind operator); false: let it finish.",
    )


class SkipRequest(Closed):
    """Exactly one of ``at`` and ``firing_id`` names the firing."""

    reason: Reason
    at: AwareDatetime | None = Field(default=None, description="The firing's instant.")
    firing_id: str | None = Field(
        default=None, max_length=200, description="The firing id (GET /api/firings)."
    )


class BlackoutRequest(Closed):
    """``once`` takes ``starts`` and ``ends``, ``weekly`` takes ``weekly``, ``month-end`` takes
    ``days``."""

    name: str = Field(min_length=1, max_length=80, pattern=r"\S")
    kind: Literal["once", "weekly", "month-end"]
    reason: Reason
    starts: str | None = Field(
        default=None, max_length=16, description="once: local YYYY-MM-DDTHH:MM."
    )
    ends: str | None = Field(default=None, max_length=16, description="once: local end.")
    weekly: str | None = Field(
        default=None, max_length=40, description="weekly: 'Sat 00:00-Sun 06:00'."
    )
    days: int | None = Field(default=None, ge=1, le=27, description="month-end: last N days.")
    jobs: list[JobName] = Field(
        default_factory=list, max_length=20, description="Empty: every job but maintenance."
    )


class PlannedRunRequest(Closed):
    """P4: a manual run at a set instant, admitted by the beat at that instant (M0)."""

    job: JobName
    at: AwareDatetime = Field(description="When (with its offset); in the future.")
    reason: Reason
    params: str = Field(default="", max_length=2000, description="As for POST /api/runs.")
    force: bool = Field(default=False, description="Admin only: a non-manual job (M7).")


# ----- answers -----------------------------------------------------------------------------------


class PlannedRun(Closed):
    firing_id: str
    job: str
    at: str = Field(json_schema_extra={"format": "date-time"})
    params: str
    force: bool
    reason: str
    actor: str
    state: Literal["planned", "started", "cancelled", "missed"]
    run_id: int | None
    created_at: str = Field(json_schema_extra={"format": "date-time"})


class PauseRow(Closed):
    job: str = Field(description="A job, or '*' for every job.")
    reason: str
    actor: str
    paused_at: str = Field(json_schema_extra={"format": "date-time"})
    until: str | None = Field(json_schema_extra={"format": "date-time"})
    source: Literal["operator", "failures"]


class SkipRow(Closed):
    firing_id: str
    job: str
    planned_at: str = Field(json_schema_extra={"format": "date-time"})
    reason: str
    actor: str
    created_at: str = Field(json_schema_extra={"format": "date-time"})


class BlackoutRow(Closed):
    name: str
    kind: Literal["once", "weekly", "month-end"]
    starts: str | None
    ends: str | None
    weekly: str | None
    days: int | None
    jobs: list[str]
    reason: str
    actor: str
    created_at: str = Field(json_schema_extra={"format": "date-time"})
    describe: str = Field(description="The window in words.")


class HoldsReply(Closed):
    pauses: list[PauseRow]
    skips: list[SkipRow]
    blackouts: list[BlackoutRow]


class Skipped(Closed):
    firing_id: str


class Me(Closed):
    name: str
    role: Literal["viewer", "operator", "admin"]
    via: Literal["token", "session"]


class ScheduledJob(Closed):
    name: JobName
    category: Category
    active: bool
    creator: str = Field(description="Who last changed the job's schedule; '-' if built-in.")
    schedule: str = Field(description="The schedule in words.")
    next_run: str | None = Field(json_schema_extra={"format": "date-time"})
    manual: bool = Field(description="Whether an operator may start it without force (M7).")
    description: str = Field(description="What the job does, in one line.")
    scheduled_by: list[str] = Field(
        description="The [schedule] options that make up its schedule (GET /api/options).",
    )
    paused: str | None = Field(
        description="P1: who paused it, why and until when; null when it is not paused "
        "(its scheduled firings do not start while it is)."
    )
    pausable: bool = Field(
        description="Whether it has firings of its own to pause (a job that follows another, "
        "as Transform follows Extract, has none)."
    )


class Run(Closed):
    id: int
    job: str
    state: RunState
    trigger: Trigger
    actor: str = Field(description="Who started it: a user name or 'scheduler' (M8).")
    reason: str | None
    planned_at: str | None = Field(json_schema_extra={"format": "date-time"})
    started_at: str | None = Field(json_schema_extra={"format": "date-time"})
    ended_at: str | None = Field(json_schema_extra={"format": "date-time"})
    ended_by: str | None
    rows_read: int
    rows_written: int
    rows_discarded: int
    warnings: int
    error: str | None
    forced: bool
    stop_kind: StopKindName | None = Field(description="Why a Stopped run stopped (R4).")
    in_process: bool = Field(description="Ran in the requesting process (gim run --local).")
    category: Category | None
    params: dict[str, Any] = Field(description="Job parameters as queued (M4).")
    created_at: str = Field(json_schema_extra={"format": "date-time"})
    duration_seconds: float | None
    worker: str | None
    stop_requested: bool
    summary: dict[str, Any] = Field(description="What the job reports: counts, progress.")
    skip: Literal["rule", "blocked"] | None = Field(
        description="A scheduled firing recorded without starting (Rejected): required by a "
        "rule (S1, S2, S6, S9, S12; listed only with which=skipped) or blocked by the "
        "configuration check (C2, a failure)."
    )
    outcome: Literal["success", "failure", "operator"] | None = Field(
        description="R4: a planned stop is a success, an operator's stop neither, a firing "
        "blocked by the configuration check a failure; null while the run has not ended, or "
        "when it never ran (Cancelled, Rejected on request or by a rule)."
    )
    note_count: int = Field(description="Operators' notes on the run (P7).")
    attempt: int = Field(description="L3: attempt k of its firing (1: the first).")
    max_attempts: int = Field(
        description="L3: the attempts its job allowed ([limits] retries + 1)."
    )
    retry: Literal["pending", "retried", "final"] | None = Field(
        description="L3: a transient failure's retry is pending (decided by the beat), was "
        "made (the next attempt's retry_of is this run), or will not come (final, why in error)."
    )
    retry_of: int | None = Field(description="L3: the attempt this one repeats.")


class Note(Closed):
    """An operator's note (P7)."""

    text: str
    actor: str
    at: str = Field(json_schema_extra={"format": "date-time"})


class NoteRequest(Closed):
    text: str = Field(min_length=1, max_length=2000, description="The note (P7).")


class AckRequest(Closed):
    note: str | None = Field(
        default=None, max_length=2000, description="A note added with the acknowledgement."
    )


class Noted(Closed):
    note_id: int
    result: str


class AuditEvent(Closed):
    """One audited action (P6)."""

    id: int
    at: str = Field(json_schema_extra={"format": "date-time"})
    actor: str
    role: str
    channel: Literal["web", "api", "cli", "celery", "beat"]
    action: str
    target: str
    reason: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    request_id: str | None
    client: str | None


class AuditPage(Closed):
    events: list[AuditEvent]
    next_before: int | None = Field(
        description="Pass as `before` for the next (older) page; null on the last page."
    )


class Discard(Closed):
    source_table: str
    source_id: int
    idb_id: int
    reason: str


class Mail(Closed):
    recipient: str
    state: str
    attempts: int
    last_error: str | None
    sent_at: str | None = Field(json_schema_extra={"format": "date-time"})


class ExtractPart(Closed):
    idb: str = Field(description="The IDB: host:port/database.")
    state: Literal["scheduled", "running", "completed", "failed", "stopped", "abandoned"]
    attempt: int = Field(description="Claims so far (a part lost with its worker is rerun).")
    lost: int = Field(description="Times declared lost (no heartbeat within the lease).")
    worker: str | None
    started_at: str | None = Field(json_schema_extra={"format": "date-time"})
    ended_at: str | None = Field(json_schema_extra={"format": "date-time"})
    rows_read: int
    rows_written: int
    error: str | None


class RunDetail(Run):
    discard_count: int
    discards: list[Discard] = Field(description="The first 100 discards of the run.")
    parts: list[ExtractPart] = Field(
        description="H2: an Extract run's parts, one per IDB (empty for other runs)."
    )
    notifications: list[Mail]
    notes: list[Note]
    time_limit: str | None = Field(
        description="L1: the job's [limits] max-runtime, e.g. 2h (stop)."
    )
    p95_seconds: float | None = Field(
        description="L2: p95 duration of the job's last 30 successful runs."
    )
    p95_successes: int = Field(description="How many successes the p95 is taken from.")


class Admission(Closed):
    run_id: int
    state: Literal["Running", "Scheduled"]
    reason: str | None


class Rejection(Closed):
    """A run the rules refused (M0): recorded as Rejected with the reason."""

    run_id: int
    state: Literal["Rejected"]
    reason: str
    error: str = Field(description="The reason again, as every error body carries it.")


class Result(Closed):
    result: str


class FailedRun(Closed):
    id: int
    job: JobName
    state: RunState
    ended_at: str = Field(json_schema_extra={"format": "date-time"})
    error: str | None


class CategorySummary(Closed):
    category: Category
    runs: int
    failures: int
    failed: list[FailedRun]


class Summary(Closed):
    days: int
    since: str = Field(json_schema_extra={"format": "date-time"})
    categories: list[CategorySummary]


class IdbStatus(Closed):
    idb: str = Field(description="host:port/database of the IDB, no credentials.")
    tables: int
    rows_extracted: int
    in_progress: bool = Field(description="An extraction of this IDB is under way.")
    last_extract: str | None = Field(json_schema_extra={"format": "date-time"})
    pending_transform: int = Field(description="Staged rows of this IDB Transform has not read.")
    segment_facts: int
    segment_discards: int


class ExtractMark(Closed):
    idb: str
    table: str
    snapshot: str | None = Field(description="The IDB snapshot of the last complete extraction.")
    in_progress: bool
    rows_extracted: int
    updated_at: str = Field(json_schema_extra={"format": "date-time"})
    pending_transform: int


class CycleRun(Closed):
    run_id: int
    job: JobName
    state: RunState
    started_at: str = Field(json_schema_extra={"format": "date-time"})
    seconds: float


class DataFreshness(Closed):
    category: Literal["ETL", "Aggregation"]
    table: str = Field(description="A fact table, or an aggregate level (SUBHOUR ... YEAR).")
    data_time: str | None = Field(
        json_schema_extra={"format": "date-time"},
        description="The end of the newest row's interval; null without rows.",
    )
    # The age itself is not here: it changes between two readers (gim etl status, the API);
    # /metrics has it (gim_data_age_seconds).
    slo_minutes: int | None = Field(description="[monitor] freshness-slo-minutes of the category.")
    stale: bool


class EtlStatus(Closed):
    idbs: list[IdbStatus] = Field(description="One entry per IDB, in registration order.")
    marks: list[ExtractMark] = Field(description="One entry per IDB and table.")
    pending_transform: int
    pending_by_table: dict[str, int]
    lag_seconds: float | None = Field(
        description="How far the newest segment fact is behind the newest staged segment."
    )
    newest_fact: str | None = Field(json_schema_extra={"format": "date-time"})
    facts: dict[str, int] = Field(description="Rows per fact table.")
    last_runs: list[CycleRun] = Field(description="The last ten Extract and Transform runs.")
    freshness: list[DataFreshness] = Field(
        description="Per fact table and aggregate level, the age of the newest data (O4)."
    )


class AggregateRequest(Closed):
    id: int
    params: dict[str, Any]
    requested_by: str
    requested_at: str = Field(json_schema_extra={"format": "date-time"})
    run_id: int | None


class AggregateRun(Closed):
    run_id: int
    state: RunState
    stop_kind: StopKindName | None
    started_at: str = Field(json_schema_extra={"format": "date-time"})
    ended_at: str | None = Field(json_schema_extra={"format": "date-time"})


class AggregateStatus(Closed):
    pending_intervals: int = Field(description="15-minute intervals waiting for aggregation.")
    oldest_pending: str | None = Field(json_schema_extra={"format": "date-time"})
    queued_requests: int
    requests: list[AggregateRequest] = Field(description="Queued re-aggregations (M4), in order.")
    last_pass_seconds: float | None
    last_runs: list[AggregateRun]
    freshness: dict[str, str | None] = Field(
        description="Per hierarchy, the start of the newest aggregated 15-minute interval."
    )


class OptionRow(Closed):
    section: OptionSection
    name: OptionName
    value: str
    default: str
    stored: bool
    description: str
    allowed: str
    changed_by: str


class CheckFinding(Closed):
    level: Literal["error", "warning"]
    item: str
    message: str
    spares: list[str]


class OptionsReply(Closed):
    options: list[OptionRow]
    check: list[CheckFinding]


class OptionUpdate(Closed):
    option: str = Field(description="'[section] name'.")
    old: str = Field(description="The value in force before (its default if it was unset).")
    new: str = Field(description="The value in force now.")


class SubscriptionRow(Closed):
    id: int
    job: JobName
    recipient: str
    on_success: bool
    on_error: bool
    created_by: str
    created_at: str = Field(json_schema_extra={"format": "date-time"})


class Created(Closed):
    id: int


# ----- did it run? (SPEC O1, O3) -----------------------------------------------------------------

Verdict = StrEnum("Verdict", {name: name for name in VERDICTS})  # type: ignore[misc]
ConditionName = StrEnum("ConditionName", {name: name for name in CONDITIONS})  # type: ignore[misc]


class Firing(Closed):
    firing_id: str = Field(description="Job and planned instant (S11); a window close has its own.")
    stream: Literal["etl", "maintenance", "statistics", "export", "window-open", "window-close"]
    job: JobName
    planned_at: str = Field(json_schema_extra={"format": "date-time"})
    verdict: Verdict | None = Field(description="null: not decided yet.")
    lag_seconds: float | None = Field(description="Decision time minus planned instant.")
    reason: str | None
    run_id: int | None = Field(description="The run the firing started, held or recorded.")
    decided_at: str | None = Field(json_schema_extra={"format": "date-time"})
    notes: list[Note] = Field(description="P7: operators' notes on the firing.")


class AlertDelivery(Closed):
    event: Literal["opened", "resolved"]
    channel: Literal["mail", "webhook"]
    target: str = Field(
        description="A recipient (user or address), or a webhook's scheme and host only (its "
        "URL may carry a secret)."
    )
    state: Literal["pending", "sent", "failed"]
    attempts: int
    last_error: str | None
    sent_at: str | None = Field(json_schema_extra={"format": "date-time"})


class Incident(Closed):
    incident: int
    job: str | None = Field(description="null: the scheduler itself (scheduler-down).")
    condition: ConditionName
    detail: str
    run_id: int | None
    opened_at: str = Field(json_schema_extra={"format": "date-time"})
    resolved_at: str | None = Field(json_schema_extra={"format": "date-time"})
    occurrences: int = Field(description="Firings or passes counted while it was open.")
    acknowledged_at: str | None = Field(json_schema_extra={"format": "date-time"})
    acknowledged_by: str | None = Field(description="P7: who acknowledged it.")
    notes: list[Note]
    deliveries: list[AlertDelivery]


# ----- data days (SPEC Q1, Q2) ------------------------------------------------------------------

Cell = Literal["complete", "pending", "purged", "n/a", "missing", "refused", "held"]


class DataDay(Closed):
    day: str = Field(json_schema_extra={"format": "date"})
    start: str = Field(json_schema_extra={"format": "date-time"})
    end: str = Field(json_schema_extra={"format": "date-time"})
    hours: float = Field(description="23 or 25 on a DST day (S10).")
    complete: bool
    cells: dict[str, Cell] = Field(
        description="Per stage: each live-fed fact table, aggregation, export (when on)."
    )
    levels: dict[str, dict[str, Cell]] = Field(
        description="The aggregation's drill-down: hierarchy -> level -> cell; missing: the "
        "day is aggregated by the marks but the level has no row for it."
    )
    reasons: dict[str, str] = Field(
        description="Why a cell is what it is: a refused re-aggregation's D5 reason, the "
        "failing check that holds an export chunk (Q3)."
    )
    deadline: str = Field(
        description="When the day is due complete: its latest stage's ready-by.",
        json_schema_extra={"format": "date-time"},
    )


CheckName = Literal["discard-ratio", "hour-rows", "aggregate-verify", "manifest-rows"]


class CheckVerdict(Closed):
    """The newest verdict of one quality check on one subject and interval (Q3)."""

    check: CheckName
    subject: str = Field(description="An IDB and fact table, a fact table, a chunk, ...")
    day: str = Field(json_schema_extra={"format": "date"})
    start: str = Field(json_schema_extra={"format": "date-time"})
    end: str = Field(json_schema_extra={"format": "date-time"})
    severity: Literal["warn", "error"]
    passed: bool
    holds: bool = Field(description="Failing, error, not overridden: it holds the export.")
    measured: str
    bound: str
    detail: str
    checked_at: str = Field(json_schema_extra={"format": "date-time"})
    overridden_at: str | None = Field(json_schema_extra={"format": "date-time"})
    overridden_by: str | None
    override_reason: str | None


class DaysReply(Closed):
    zone: str
    ready_by: str = Field(
        description="[monitor] ready-by as set: HH:MM local, then CATEGORY=HH:MM overrides."
    )
    stages: list[str]
    days: list[DataDay]
    checks: list[CheckVerdict] = Field(description="Failing quality checks of these days (Q3).")


class CheckOverrideRequest(Closed):
    day: BodyDay = Field(description="The local data day.")
    check: CheckName
    reason: str = Field(min_length=1, max_length=2000, description="Why (audited).")


# ----- back-fills (SPEC B1) ---------------------------------------------------------------------

BackfillStep = Literal["aggregate", "export"]


class BackfillRequest(Closed):
    """A back-fill (B1) of a range of past local days; ``dry_run``: the items and the
    estimate, nothing recorded."""

    from_day: BodyDay = Field(alias="from", description="First local day.")
    to_day: BodyDay = Field(alias="to", description="Last local day (a past day).")
    steps: list[BackfillStep] = Field(default=["aggregate", "export"], min_length=1, max_length=2)
    reprocess: Literal["missing", "failed", "all"] = Field(
        default="missing",
        description="missing: days with absent aggregates / chunks gone from the export "
        "directory; failed: days with a failing quality check or a failed item; all: every day.",
    )
    order: Literal["oldest", "newest"] = "oldest"
    max_parallel: int = Field(default=1, ge=1, le=16, description="Items running at once.")
    reason: Reason
    dry_run: bool = False

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class BackfillItem(Closed):
    position: int
    day: str = Field(json_schema_extra={"format": "date"})
    step: BackfillStep
    action: str = Field(description="What the item does, in words.")
    status: str | None = Field(
        default=None, description="pending, running, done, retrying, or its run's end state."
    )
    run_id: int | None = None
    attempt: int | None = None
    started_at: str | None = None
    ended_at: str | None = None
    seconds: float | None = None
    error: str | None = None


class Backfill(Closed):
    id: int | None = Field(description="null for a dry run.")
    dry_run: bool | None = None
    from_: str = Field(alias="from", json_schema_extra={"format": "date"})
    to: str = Field(json_schema_extra={"format": "date"})
    steps: list[BackfillStep]
    reprocess: str
    order: str
    max_parallel: int
    reason: str
    state: Literal["dry-run", "active", "paused", "cancelled", "done"]
    created_by: str | None = None
    created_at: str | None = None
    ended_at: str | None = None
    waiting: str | None = Field(default=None, description="Why the next item waits (the gate).")
    progress: dict[str, dict[str, int]] | None = None
    done: int | None = None
    total: int | None = None
    estimate_seconds: float | None = Field(
        description="Time left from measured items; null while a step has none measured."
    )
    items: list[BackfillItem] | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# ----- timeline (SPEC A7) -----------------------------------------------------------------------


class TimelineItem(Closed):
    kind: Literal["planned", "window", "run", "hold"] = Field(
        description="hold: a pause or a blackout window (P1, P3), its reason in `reason`."
    )
    start: str = Field(json_schema_extra={"format": "date-time"})
    end: str | None = Field(json_schema_extra={"format": "date-time"})
    state: RunState | None
    outcome: Literal["success", "failure", "operator", "running"] | None
    run_id: int | None
    verdict: Verdict | None = Field(description="A planned firing's verdict (O1); null: none yet.")
    reason: str | None
    firing_id: str | None
    notes: list[str] = Field(description="P7: a run's or a firing's notes, 'actor: text'.")


class TimelineLane(Closed):
    job: JobName
    items: list[TimelineItem]


class TimelineReply(Closed):
    zone: str
    start: str = Field(json_schema_extra={"format": "date-time"})
    end: str = Field(json_schema_extra={"format": "date-time"})
    hours: float = Field(description="23, 24 or 25 per day (DST).")
    now: str = Field(json_schema_extra={"format": "date-time"})
    lanes: list[TimelineLane]


def _schedule_values_schema() -> dict[str, Any]:
    """The names a preview takes ([schedule] options) and, where a pattern can say it, the
    form of each one's value."""
    names = [spec.name for spec in OPTIONS if spec.section == "schedule"]
    return {
        "propertyNames": {"enum": names},
        "properties": {
            spec.name: {"type": "string", "pattern": spec.type.pattern}
            for spec in OPTIONS
            if spec.section == "schedule" and spec.type.pattern
        },
    }


class SchedulePreview(Closed):
    values: dict[str, str] = Field(
        description='[schedule] option name -> value to try, e.g. {"etl-frequency": "15"}.',
        max_length=20,
        json_schema_extra=_schedule_values_schema(),
    )
    start: BodyDay | None = Field(
        default=None,
        description="First local day, YYYY-MM-DD from 1970 to 2999 (default: today in the "
        "schedule's zone).",
    )
    days: int = Field(default=1, ge=1, le=7)


class PlannedEvent(Closed):
    job: JobName
    event: Literal["start", "stop"]
    at: str = Field(json_schema_extra={"format": "date-time"})
    held: str | None = Field(
        default=None,
        description="P1-P3: the verdict and reason of an operator's hold that skips this start "
        "(absent: it runs).",
    )


class PreviewFinding(Closed):
    level: Literal["error", "warning"]
    item: str
    message: str
    spares: list[str]


class SchedulePreviewReply(Closed):
    start: str = Field(json_schema_extra={"format": "date-time"})
    end: str = Field(json_schema_extra={"format": "date-time"})
    events: list[PlannedEvent]
    findings: list[PreviewFinding]
