"""Least-privilege PostgreSQL role for the web app (issue 11; issue "Security hardening").

The schema owner (``gim db upgrade``) is also the role of the beat and the workers: jobs create
and drop day partitions and aggregate tables, which PostgreSQL allows only to a table's owner.
The web app needs far less, and ``gim db grant-web ROLE`` gives an existing login role exactly
that (idempotent; re-run after every upgrade, as compose's migrate service does):

- runs: read all; record admissions and stop and cancel requests. Column grants limit an
  update to the stop and cancel columns, and row-level security (migration 0010) limits it to
  Scheduled and Running runs that stay so or are cancelled before they started: an ended run,
  its counts or its outcome cannot be rewritten;
- options: read; change only through ``gim_write_option`` (writes the value and its log row);
- users and tokens: read (a token's last use is recorded); sessions and failed logins: its own;
  users and tokens are managed by the owner (``gim user``, ``gim token``);
- notification subscriptions (admins), re-aggregation requests; extraction marks and the
  aggregation queue (status pages); nothing on facts, staging, dimensions or aggregates: their
  counts and freshness come from two SECURITY DEFINER functions (migration 0013).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from gim_tasks.errors import GimError

#: table -> privileges of the web role. Anything not listed: no access at all.
WEB_PRIVILEGES: dict[str, str] = {
    "alembic_version": "SELECT",  # gim status / the configuration check: schema at head?
    # M1 admissions; M6 stop and cancel (row-level security bounds which rows, migration 0010)
    "job_run": "SELECT, INSERT, "
    "UPDATE (state, reason, ended_at, ended_by, stop_requested_at, stop_kind)",
    "agg_request": "SELECT, INSERT",  # M4 re-aggregation requests
    "purge_mark": "SELECT",  # D5: what a re-aggregation could be rebuilt from
    "option_value": "SELECT",  # options: written through gim_write_option only
    "option_change": "SELECT",
    "discard": "SELECT",  # a run's discards (A2, R3)
    "export_mark": "SELECT",  # the retention check
    "date_time": "SELECT",  # the calendar check (C1)
    "date_time_extra": "SELECT",  # the calendar check of the custom calendars (C1)
    "web_user": "SELECT",  # login
    "api_token": "SELECT, UPDATE (last_used_at)",  # last use of a token
    "web_session": "SELECT, INSERT, UPDATE (last_seen_at), DELETE",  # sessions
    "login_failure": "SELECT, INSERT, DELETE",  # login throttling (a reservation per attempt)
    "login_success": "SELECT, INSERT, UPDATE (at)",  # the addresses an account logged in from
    "notification_subscription": "SELECT, INSERT, UPDATE, DELETE",  # A3, admins
    "notification": "SELECT",  # a run's mails
    # O2: the watchdog runs in the web app: it judges missed firings, opens and resolves
    # incidents and sends their alerts (the beat writes the ledger's plan and its verdicts).
    "incident": "SELECT, INSERT, UPDATE (resolved_at, firings, acknowledged_at, acknowledged_by)",
    "firing": "SELECT, INSERT, UPDATE (verdict, decided_at, reason)",
    "alert": "SELECT, INSERT, UPDATE (state, attempts, next_attempt_at, last_error, sent_at)",
    "webhook": "SELECT",
    # P1-P3: operators pause, resume, skip a firing and keep blackout windows from the web
    "job_pause": "SELECT, INSERT, UPDATE, DELETE",
    "firing_skip": "SELECT, INSERT, DELETE",
    "blackout": "SELECT, INSERT, DELETE",
    "run_at": "SELECT, INSERT, UPDATE (state)",  # P4: plan and cancel a run at a set time
    # B1: operators create, pause, resume and cancel back-fills (the beat starts their items)
    "backfill": "SELECT, INSERT, UPDATE (state, waiting, ended_at)",
    "backfill_item": "SELECT, INSERT",
    "pool_slot": "SELECT, INSERT",  # B2: an admitted manual run takes its slots
    "extract_part": "SELECT",  # H2: a run page lists its Extract parts
    # P6: the audit trail is append-only (a trigger refuses UPDATE and DELETE to all roles)
    "scheduler_epoch": "SELECT",  # Q1: no data day before the first tick is judged
    "audit_event": "SELECT, INSERT",
    "note": "SELECT, INSERT",  # P7
    # Q3: quality checks are judged by the export job; admins override a failing one
    "quality_check": "SELECT, UPDATE (overridden_at, overridden_by, override_reason)",
    "export_hold": "SELECT",  # Q3: the Days grid's held cells
    # ETL and aggregation status pages (metadata, no data rows; counts through the functions)
    "idb_source": "SELECT",
    "extract_mark": "SELECT",
    "agg_pending": "SELECT",
}
#: Functions the web role may call (SECURITY DEFINER: they run as the owner).
WEB_FUNCTIONS = (
    "gim_write_option(text, text, text, text, text)",
    "gim_etl_counts()",  # counts over staging and facts (migration 0013)
    "gim_aggregate_freshness()",  # newest interval per aggregate table (migration 0013)
    "gim_data_freshness()",  # newest data time per fact table and level (migration 0015, O4)
    "gim_day_coverage(date[], text)",  # which local days have rows, per table (0021, Q2)
)


def grant_web(engine: Engine, role: str, actor: str = "gim-tasks") -> list[str]:
    """Grant ``role`` the web app's privileges (and revoke everything else it had on the
    Info Mart's tables). Returns the statements run."""
    statements: list[str] = []
    with engine.begin() as conn:
        exists = conn.execute(
            sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}
        ).scalar_one_or_none()
        if exists is None:
            raise GimError(
                f"role '{role}' does not exist; create it first, e.g. "
                f"CREATE ROLE {role} LOGIN PASSWORD '...'"
            )
        owner = conn.execute(sa.text("SELECT current_user")).scalar_one()
        if role == owner:
            raise GimError(f"'{role}' owns the schema; the web role must be a different role")
        quoted = conn.dialect.identifier_preparer.quote(role)
        statements.append(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {quoted}")
        statements.append(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {quoted}")
        statements.append(f"REVOKE CREATE ON SCHEMA public FROM {quoted}")
        statements.append("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        statements.append(f"GRANT USAGE ON SCHEMA public TO {quoted}")
        statements.append(f"REVOKE ALL ON ALL FUNCTIONS IN SCHEMA public FROM {quoted}")
        for table, privileges in WEB_PRIVILEGES.items():
            statements.append(f"GRANT {privileges} ON {table} TO {quoted}")
        for function in WEB_FUNCTIONS:
            statements.append(f"GRANT EXECUTE ON FUNCTION {function} TO {quoted}")
        for statement in statements:
            conn.execute(sa.text(statement))
        from gim_tasks.monitor import audit

        after = {"statements": len(statements), "tables": sorted(WEB_PRIVILEGES)}
        audit.record(conn, audit.Action.GRANT_WEB, role, actor, after=after)
    return statements
