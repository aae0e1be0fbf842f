"""SQLAlchemy Core metadata of the project's own tables in the Info Mart database.

Alembic migrations under ``migrations/versions`` create these; a test checks that the migrated
schema and this metadata agree, so the two cannot drift.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from gim_tasks.lifecycle import (
    AUDIT_CHANNELS,
    CONDITIONS,
    RETRY_STATES,
    ROLES,
    RUN_STATES,
    SKIP_KINDS,
    STOP_KINDS,
    VERDICTS,
)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN (" + ", ".join(f"'{value}'" for value in values) + ")"


# Stable constraint names, so migrations can refer to them.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


#: Operator job options (SPEC §2), one row per option that differs from its default.
option_value = Table(
    "option_value",
    metadata,
    Column("section", Text, primary_key=True),
    Column("name", Text, primary_key=True),
    Column("value", Text, nullable=False),
    Column("changed_by", Text, nullable=False),
    Column("changed_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
)

#: Every change of an option: who, when, old and new value (SPEC §2, A1 "Creator").
option_change = Table(
    "option_change",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("section", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("old_value", Text),
    Column("new_value", Text),
    Column("changed_by", Text, nullable=False),
    Column("changed_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
)

#: One row per run of a job (SPEC R1), including Scheduled, Rejected and Cancelled ones.
job_run = Table(
    "job_run",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("job", Text, nullable=False),
    Column("trigger", Text, nullable=False),  # scheduled | manual | forced | restart
    Column("actor", Text, nullable=False),  # user name or "scheduler" (M8)
    Column("params", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("state", Text, nullable=False),
    Column("reason", Text),  # why Scheduled / Rejected / Stopped / Cancelled
    # S11: "job:planned-instant" of a scheduler firing; the unique index below makes a second
    # beat's (or a redelivered message's) attempt to start the same firing a no-op.
    Column("firing_id", Text),
    Column("planned_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("started_at", DateTime(timezone=True)),
    Column("ended_at", DateTime(timezone=True)),
    Column("ended_by", Text),  # who stopped or cancelled it (M8)
    Column("rows_read", BigInteger, nullable=False, server_default=text("0")),
    Column("rows_written", BigInteger, nullable=False, server_default=text("0")),
    Column("rows_discarded", BigInteger, nullable=False, server_default=text("0")),
    Column("warnings", Integer, nullable=False, server_default=text("0")),
    Column("error", Text),
    Column("summary", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("forced", Boolean, nullable=False, server_default=text("false")),
    Column("fencing_token", BigInteger),
    Column("task_id", Text),
    Column("worker", Text),
    Column("heartbeat_at", DateTime(timezone=True)),
    # Sent to a worker (a Scheduled run with dispatched_at set is about to start; without it,
    # it waits for a rule). A stop request is recorded here and polled by the worker (M6).
    Column("dispatched_at", DateTime(timezone=True)),
    Column("stop_requested_at", DateTime(timezone=True)),
    # R4: why a Stopped run stopped (gim_tasks.lifecycle.StopKind); every Stopped run has one.
    Column("stop_kind", Text),
    # M0: executes in the process that asked for it (gim run --local), never sent to a worker.
    Column("in_process", Boolean, nullable=False, server_default=text("false")),
    # R4: a firing the scheduler recorded without starting it (Rejected): required by a rule,
    # or blocked by the configuration check (C2, a failure). NULL for every other run.
    Column("skip", Text),
    # L3: attempt k of its firing (a retry's firing id is the first attempt's with "#k"); the
    # attempts its job allowed when it was recorded ([limits] retries + 1); where a failed
    # attempt stands (gim_tasks.lifecycle.Retry); the attempt it repeats.
    Column("attempt", Integer, nullable=False, server_default=text("1")),
    Column("max_attempts", Integer, nullable=False, server_default=text("1")),
    Column("retry", Text),
    Column("retry_of", BigInteger, ForeignKey("job_run.id", ondelete="SET NULL")),
    CheckConstraint(
        "state IN (" + ", ".join(f"'{state}'" for state in RUN_STATES) + ")", name="state"
    ),
    CheckConstraint(_in("retry", RETRY_STATES), name="retry"),
    CheckConstraint("attempt >= 1 AND max_attempts >= 1", name="attempts"),
    CheckConstraint(
        "stop_kind IN (" + ", ".join(f"'{kind}'" for kind in STOP_KINDS) + ")", name="stop_kind"
    ),
    CheckConstraint("state <> 'Stopped' OR stop_kind IS NOT NULL", name="stopped_has_kind"),
    CheckConstraint("skip IN (" + ", ".join(f"'{kind}'" for kind in SKIP_KINDS) + ")", name="skip"),
    CheckConstraint("skip IS NULL OR state = 'Rejected'", name="skip_is_rejected"),
    Index(
        "uq_job_run_firing_id",
        "firing_id",
        unique=True,
        postgresql_where=text("firing_id IS NOT NULL"),
    ),
    # S2: at most one Running run per job, whoever started it; the database refuses a second.
    # (B1: a back-fill's items are runs of one job, up to max-parallel at once: they are held
    # to one Running run per day and step instead, by the next index.)
    Index(
        "uq_job_run_one_running",
        "job",
        unique=True,
        postgresql_where=text("state = 'Running' AND trigger <> 'backfill'"),
    ),
    Index(
        "uq_job_run_backfill_item_running",
        text("(params->>'step')"),
        text("(params->>'day')"),
        unique=True,
        postgresql_where=text("state = 'Running' AND trigger = 'backfill'"),
    ),
    Index("ix_job_run_job_created", "job", "created_at"),
    Index("ix_job_run_state", "state"),
    Index("ix_job_run_retry_pending", "ended_at", postgresql_where=text("retry = 'pending'")),
    # History's order (issue 40): newest start (or creation) first, all jobs or one.
    Index("ix_job_run_began", text("coalesce(started_at, created_at)"), "id"),
    Index("ix_job_run_job_began", "job", text("coalesce(started_at, created_at)"), "id"),
    Index("ix_job_run_ended", "ended_at"),  # the summary strip: runs ended in the last days
    Index("ix_job_run_job_planned", "job", "planned_at"),  # the beat: the newest ETL cycle
)


#: Users of the web app and API (A5). Passwords are argon2 hashes (gim_tasks.web.auth).
web_user = Table(
    "web_user",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("name", Text, nullable=False, unique=True),
    Column("role", Text, nullable=False),
    Column("password_hash", Text, nullable=False),
    Column("email", Text),  # where notifications for this user go (A3)
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("created_by", Text, nullable=False),
    CheckConstraint("role IN (" + ", ".join(f"'{role}'" for role in ROLES) + ")", name="role"),
)

#: API tokens for scripts (``Authorization: Bearer``). Only a SHA-256 of the token is kept:
#: tokens are 256-bit random, so a fast hash is enough and lookups stay indexed.
api_token = Table(
    "api_token",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("user_id", BigInteger, ForeignKey("web_user.id", ondelete="CASCADE"), nullable=False),
    Column("label", Text, nullable=False),
    Column("token_sha256", Text, nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("last_used_at", DateTime(timezone=True)),
    Column("expires_at", DateTime(timezone=True)),  # None: until revoked
)

#: Browser sessions (A5). The cookie carries a random session id; only its SHA-256 is kept.
#: Logout deletes the row; a password or role change deletes every row of the user; removing
#: the user cascades. ``expires_at`` is the absolute end, ``last_seen_at`` the idle clock.
web_session = Table(
    "web_session",
    metadata,
    Column("id_sha256", Text, primary_key=True),
    Column(
        "user_id",
        BigInteger,
        ForeignKey("web_user.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("client", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("last_seen_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)

#: Failed logins, per account and client address (login throttling, gim_tasks.web.security).
login_failure = Table(
    "login_failure",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("account", Text, nullable=False),
    Column("client", Text, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Index("ix_login_failure_account_at", "account", "at"),
    Index("ix_login_failure_client_at", "client", "at"),
)

#: Issue 41: the addresses an account logged in from (the last time each): a correct password
#: from one of them gets through while strangers' failures hold the account elsewhere.
login_success = Table(
    "login_success",
    metadata,
    Column("account", Text, primary_key=True),
    Column("client", Text, primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
)

#: A3: who hears about a job's runs. ``recipient`` is a user name or an e-mail address.
notification_subscription = Table(
    "notification_subscription",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("job", Text, nullable=False),
    Column("recipient", Text, nullable=False),
    Column("on_success", Boolean, nullable=False),
    Column("on_error", Boolean, nullable=False),
    Column("created_by", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    UniqueConstraint("job", "recipient", name="uq_notification_subscription_job_recipient"),
    CheckConstraint("on_success OR on_error", name="some_event"),
)

#: The outbox of notification mails (A3). A trigger on job_run inserts the rows in the same
#: transaction that ends a run, so no run end is ever without its mails, whichever process
#: ended it (worker, beat's worker-lost sweep). The unique key makes it once per recipient.
notification = Table(
    "notification",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("run_id", BigInteger, ForeignKey("job_run.id", ondelete="CASCADE"), nullable=False),
    Column("recipient", Text, nullable=False),
    Column("state", Text, nullable=False, server_default=text("'pending'")),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("last_error", Text),
    Column(
        "next_attempt_at", DateTime(timezone=True), nullable=False, server_default=text("now()")
    ),
    Column("sent_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    # What the mail is about: the run's end, or an incident the run opened (``blocked``: the
    # configuration check blocks the job's firings) and its resolution (``unblocked``).
    Column("kind", Text, nullable=False, server_default=text("'end'")),
    UniqueConstraint("run_id", "recipient", "kind", name="uq_notification_run_recipient"),
    CheckConstraint("kind IN ('end', 'blocked', 'unblocked')", name="kind"),
    CheckConstraint("state IN ('pending', 'sent', 'failed')", name="state"),
    Index("ix_notification_pending", "next_attempt_at", postgresql_where=text("state = 'pending'")),
)


#: Conditions that repeat every slot until they clear, opened once and resolved once (R4: a
#: block of the configuration check mails when it starts and when it clears, not per slot).
#: The partial unique index keeps one open incident per job and condition, whichever beat
#: records it (two beats insert ON CONFLICT DO NOTHING under the admission lock anyway).
incident = Table(
    "incident",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("job", Text, nullable=False),
    Column("condition", Text, nullable=False),
    Column("detail", Text, nullable=False),
    # The run that opened it (a block, a failure, a late start); none for a silent scheduler,
    # missed firings or stale data.
    Column("run_id", BigInteger, ForeignKey("job_run.id", ondelete="CASCADE")),
    Column("opened_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("resolved_at", DateTime(timezone=True)),
    Column("firings", Integer, nullable=False, server_default=text("1")),
    # P7: an operator acknowledged it: its repeat notices stop until it resolves.
    Column("acknowledged_at", DateTime(timezone=True)),
    Column("acknowledged_by", Text),
    CheckConstraint(_in("condition", CONDITIONS), name="condition"),
    Index(
        "uq_incident_open",
        "job",
        "condition",
        unique=True,
        postgresql_where=text("resolved_at IS NULL"),
    ),
)


#: SPEC O1: every planned firing, written by the beat at least 24 h ahead (monitor/ledger.py),
#: with one verdict once decided. The firing id is the engine's (S11), so a launch finds its
#: row; aggregation window closes have ids of their own.
firing = Table(
    "firing",
    metadata,
    Column("firing_id", Text, primary_key=True),
    Column("stream", Text, nullable=False),  # etl, maintenance, statistics, export, window-*
    Column("job", Text, nullable=False),
    Column("planned_at", DateTime(timezone=True), nullable=False),
    Column("verdict", Text),  # NULL: not decided yet
    Column("decided_at", DateTime(timezone=True)),
    Column("lag_seconds", Float),
    Column("reason", Text),
    Column("run_id", BigInteger, ForeignKey("job_run.id", ondelete="SET NULL")),
    # L3: the attempts its run took (the last one is ``run_id``).
    Column("attempts", Integer, nullable=False, server_default=text("1")),
    CheckConstraint(_in("verdict", VERDICTS), name="verdict"),
    Index("ix_firing_planned_at", "planned_at"),
    Index("ix_firing_job_planned_at", "job", "planned_at"),
    Index("ix_firing_undecided", "planned_at", postgresql_where=text("verdict IS NULL")),
)

#: The instant a beat first ticked against this database (one row, issue 31): the ledger plans
#: and judges no firing before it, so a first start raises no alarm about slots planned before
#: the system existed.
scheduler_epoch = Table(
    "scheduler_epoch",
    metadata,
    Column("id", Boolean, primary_key=True, server_default=text("true")),
    Column("first_tick_at", DateTime(timezone=True), nullable=False),
    CheckConstraint("id", name="one_row"),
)

#: The options this version declares (the registry's, site jobs' included): the only ones
#: ``gim_write_option`` writes (issue 41). ``gim db upgrade`` keeps it equal to the registry.
option_key = Table(
    "option_key",
    metadata,
    Column("section", Text, primary_key=True),
    Column("name", Text, primary_key=True),
)

#: SPEC P1: paused jobs, one row per job (``*``: every job, a global pause that leaves each
#: job's own pause in place). ``until``: resumed by the beat's first tick at or after it.
#: ``source``: ``operator``, or ``failures`` (P5: paused by N consecutive failures).
job_pause = Table(
    "job_pause",
    metadata,
    Column("job", Text, primary_key=True),
    Column("reason", Text, nullable=False),
    Column("actor", Text, nullable=False),
    Column("paused_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("until", DateTime(timezone=True)),
    Column("source", Text, nullable=False, server_default=text("'operator'")),
    CheckConstraint("length(btrim(reason)) > 0", name="reason"),
    CheckConstraint("source IN ('operator', 'failures')", name="source"),
)

#: SPEC P2: one future firing an operator skipped (its verdict is ``operator-skip``).
firing_skip = Table(
    "firing_skip",
    metadata,
    Column("firing_id", Text, primary_key=True),
    Column("job", Text, nullable=False),
    Column("planned_at", DateTime(timezone=True), nullable=False),
    Column("reason", Text, nullable=False),
    Column("actor", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    CheckConstraint("length(btrim(reason)) > 0", name="reason"),
)

#: SPEC P3: named blackout windows in the schedule's zone. ``kind`` ``once`` (``starts`` ..
#: ``ends``, local wall times), ``weekly`` (``weekly``: "Sat 00:00-Sun 06:00") or
#: ``month-end`` (the last ``days`` days of every month); ``jobs`` empty: every job but
#: maintenance.
blackout = Table(
    "blackout",
    metadata,
    Column("name", Text, primary_key=True),
    Column("kind", Text, nullable=False),
    Column("starts", Text),
    Column("ends", Text),
    Column("weekly", Text),
    Column("days", Integer),
    Column("jobs", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    Column("reason", Text, nullable=False),
    Column("actor", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    CheckConstraint("kind IN ('once', 'weekly', 'month-end')", name="kind"),
    CheckConstraint("length(btrim(reason)) > 0", name="reason"),
)

#: SPEC P4: one manual run planned at a set instant; ``firing_id`` ``at:JOB:ISO`` is also its
#: ledger row's and its run's (unique in job_run: started once however many beats).
run_at = Table(
    "run_at",
    metadata,
    Column("firing_id", Text, primary_key=True),
    Column("job", Text, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("params", Text, nullable=False, server_default=text("''")),
    Column("force", Boolean, nullable=False, server_default=text("false")),
    Column("reason", Text, nullable=False),
    Column("actor", Text, nullable=False),
    Column("state", Text, nullable=False, server_default=text("'planned'")),
    Column("run_id", BigInteger, ForeignKey("job_run.id", ondelete="SET NULL")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    CheckConstraint("state IN ('planned', 'started', 'cancelled', 'missed')", name="state"),
    CheckConstraint("length(btrim(reason)) > 0", name="reason"),
    Index("ix_run_at_planned", "at", postgresql_where=text("state = 'planned'")),
)

#: SPEC O3: receivers of incident messages (JSON POST); ``events`` limits the conditions
#: (empty: all).
webhook = Table(
    "webhook",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("url", Text, nullable=False, unique=True),
    Column("events", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    Column("created_by", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
)

#: SPEC O3: one delivery of an incident's opened or resolved message to one mail recipient or
#: webhook; the unique key makes queueing idempotent, ``FOR UPDATE SKIP LOCKED`` keeps two
#: senders (web replicas) off the same row (monitor/alerts.py).
alert = Table(
    "alert",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column(
        "incident_id", BigInteger, ForeignKey("incident.id", ondelete="CASCADE"), nullable=False
    ),
    Column("event", Text, nullable=False),
    Column("channel", Text, nullable=False),
    Column("target", Text, nullable=False),
    Column("state", Text, nullable=False, server_default=text("'pending'")),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column(
        "next_attempt_at", DateTime(timezone=True), nullable=False, server_default=text("now()")
    ),
    Column("last_error", Text),
    Column("sent_at", DateTime(timezone=True)),
    CheckConstraint("event IN ('opened', 'resolved')", name="event"),
    CheckConstraint("channel IN ('mail', 'webhook')", name="channel"),
    CheckConstraint("state IN ('pending', 'sent', 'failed')", name="state"),
    UniqueConstraint("incident_id", "event", "channel", "target", name="uq_alert_delivery"),
    Index("ix_alert_pending", "next_attempt_at", postgresql_where=text("state = 'pending'")),
)

#: SPEC P6: one append-only row per mutating action of every channel, written in the
#: transaction of the change (monitor/audit.py). A trigger refuses UPDATE, DELETE and TRUNCATE
#: to every role, the owner included (migration 0019); the web role may insert and read.
audit_event = Table(
    "audit_event",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("actor", Text, nullable=False),
    Column("role", Text, nullable=False),
    Column("channel", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("target", Text, nullable=False, server_default=text("''")),
    Column("reason", Text),
    Column("before", JSONB),
    Column("after", JSONB),
    Column("request_id", Text),
    Column("client", Text),
    CheckConstraint(_in("channel", AUDIT_CHANNELS), name="channel"),
    Index("ix_audit_event_at", "at"),
    Index("ix_audit_event_actor_at", "actor", "at"),
    Index("ix_audit_event_target_at", "target", "at"),
)

#: SPEC P7: an operator's note on a run, a firing or an incident (audited as ``note``).
note = Table(
    "note",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("kind", Text, nullable=False),
    Column("target", Text, nullable=False),
    Column("text", Text, nullable=False),
    Column("actor", Text, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    CheckConstraint("kind IN ('run', 'firing', 'incident')", name="kind"),
    CheckConstraint("length(btrim(text)) > 0", name="text"),
    Index("ix_note_kind_target", "kind", "target"),
)

#: SPEC Q3: the newest verdict of each quality check on each subject and interval (an export
#: chunk, an hour, a local day). Written by the export job (chunk checks, before it publishes a
#: chunk; day checks at its end) and ``gim check run``; the web role reads it and writes only
#: an override (admins, audited as ``check-override``). A failing ``error`` row that is not
#: overridden holds the export of every chunk it overlaps.
quality_check = Table(
    "quality_check",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("name", Text, nullable=False),
    Column("subject", Text, nullable=False),
    Column("day", Date, nullable=False),  # the local data day of start_ts
    Column("start_ts", DateTime(timezone=True), nullable=False),
    Column("end_ts", DateTime(timezone=True), nullable=False),
    Column("severity", Text, nullable=False),
    Column("passed", Boolean, nullable=False),
    Column("measured", Text, nullable=False),
    Column("bound", Text, nullable=False),
    Column("detail", Text, nullable=False),
    Column("checked_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("overridden_at", DateTime(timezone=True)),
    Column("overridden_by", Text),
    Column("override_reason", Text),
    CheckConstraint("severity IN ('warn', 'error')", name="severity"),
    CheckConstraint(
        "overridden_at IS NULL OR length(btrim(override_reason)) > 0", name="override_reason"
    ),
    CheckConstraint("end_ts > start_ts", name="interval"),
    UniqueConstraint("name", "subject", "start_ts", "end_ts", name="uq_quality_check_scope"),
    Index("ix_quality_check_day", "day"),
)

#: SPEC Q3: an export chunk held by a failing ``error`` check. The export mark moves past it
#: (the chunks after it are published on time); each export run tries the open holds first and
#: publishes a chunk once its checks pass or are overridden (``released_at``). Only the export
#: job writes it, and the export is single-instance (S2) and fenced: no two writers.
export_hold = Table(
    "export_hold",
    metadata,
    Column("chunk_start", DateTime(timezone=True), primary_key=True),
    Column("chunk_end", DateTime(timezone=True), nullable=False),
    Column("reason", Text, nullable=False),
    Column("held_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("held_by_run", BigInteger),
    Column("released_at", DateTime(timezone=True)),
    Column("released_by_run", BigInteger),
    Column("release", Text),
    CheckConstraint("release IN ('passed', 'override')", name="release"),
    Index("ix_export_hold_open", "chunk_start", postgresql_where=text("released_at IS NULL")),
)


#: SPEC B1: a back-fill, a stored and resumable replay of steps over a local date range. Its
#: items (one per day and step) are runs of the back-fill job with firing id
#: ``backfill:ID:STEP:DAY`` (unique in job_run: exactly once across crashes, S11).
backfill = Table(
    "backfill",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("from_day", Date, nullable=False),
    Column("to_day", Date, nullable=False),
    Column("steps", ARRAY(Text), nullable=False),
    Column("reprocess", Text, nullable=False),
    Column("item_order", Text, nullable=False),
    Column("max_parallel", Integer, nullable=False),
    Column("reason", Text, nullable=False),
    # active -> paused -> active ...; -> cancelled; -> done (every item ended)
    Column("state", Text, nullable=False, server_default=text("'active'")),
    Column("created_by", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("ended_at", DateTime(timezone=True)),
    # Why the next item is not started (the gate's words: maintenance, a pool, a cycle first).
    Column("waiting", Text),
    CheckConstraint("state IN ('active', 'paused', 'cancelled', 'done')", name="state"),
    CheckConstraint("reprocess IN ('missing', 'failed', 'all')", name="reprocess"),
    CheckConstraint("item_order IN ('oldest', 'newest')", name="item_order"),
    CheckConstraint("max_parallel BETWEEN 1 AND 16", name="max_parallel"),
    CheckConstraint("from_day <= to_day", name="range"),
    CheckConstraint("length(btrim(reason)) > 0", name="reason"),
    Index("ix_backfill_live", "id", postgresql_where=text("state IN ('active', 'paused')")),
)

backfill_item = Table(
    "backfill_item",
    metadata,
    Column(
        "backfill_id", BigInteger, ForeignKey("backfill.id", ondelete="CASCADE"), primary_key=True
    ),
    Column("step", Text, primary_key=True),
    Column("day", Date, primary_key=True),
    Column("position", Integer, nullable=False),  # the back-fill's order
    Column("action", Text, nullable=False),  # what it does, in words (the dry run's list)
    # The newest attempt's run (attempt k: firing id with "#k", L3); NULL: not started.
    Column("run_id", BigInteger, ForeignKey("job_run.id", ondelete="SET NULL")),
    CheckConstraint("step IN ('aggregate', 'export')", name="step"),
    Index("ix_backfill_item_order", "backfill_id", "position"),
)

#: SPEC B2: one row per run holding slots of a pool, taken in the admission's transaction
#: (under the admission lock) and tied to the run: its fencing token is written when the run is
#: claimed, and the row goes in the same transaction as the run's end, whichever path ends it
#: (finish, the R2 sweep of a lost or paused worker, a cancel): trigger ``pool_slot_follow``,
#: migration 0024. No slot outlives its run.
pool_slot = Table(
    "pool_slot",
    metadata,
    Column("run_id", BigInteger, ForeignKey("job_run.id", ondelete="CASCADE"), primary_key=True),
    Column("pool", Text, nullable=False),
    Column("weight", Integer, nullable=False),
    Column("fencing_token", BigInteger),
    Column("taken_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    CheckConstraint("weight >= 1", name="weight"),
)


#: SPEC H2: one row per IDB of an Extract run that fans out: claimed by any worker (state
#: running, a fencing token of its own from ``fencing_seq``), its commits fenced by both its
#: token and its run's (runtime/parts.py); a part lost with its worker goes back to scheduled
#: and is rerun alone. Trigger ``extract_part_follow`` (migration 0025) abandons the parts of
#: a run that ended, in the same transaction.
extract_part = Table(
    "extract_part",
    metadata,
    Column("run_id", BigInteger, ForeignKey("job_run.id", ondelete="CASCADE"), primary_key=True),
    Column("idb", Text, primary_key=True),  # idb_name(url): host:port/database
    Column("position", Integer, nullable=False),
    Column("state", Text, nullable=False, server_default=text("'scheduled'")),
    Column("attempt", Integer, nullable=False, server_default=text("0")),
    Column("lost", Integer, nullable=False, server_default=text("0")),
    Column("fencing_token", BigInteger),
    Column("worker", Text),
    Column("started_at", DateTime(timezone=True)),
    Column("heartbeat_at", DateTime(timezone=True)),
    Column("ended_at", DateTime(timezone=True)),
    Column("rows_read", BigInteger, nullable=False, server_default=text("0")),
    Column("rows_written", BigInteger, nullable=False, server_default=text("0")),
    Column("error", Text),
    # L3: the part failed with an error a retry may cure (errors.is_transient)
    Column("transient", Boolean, nullable=False, server_default=text("false")),
    CheckConstraint(
        "state IN ('scheduled', 'running', 'completed', 'failed', 'stopped', 'abandoned')",
        name="state",
    ),
)
