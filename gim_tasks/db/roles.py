"""Least-privilege PostgreSQL role for the web app (issue 11, hardening).

The schema owner (``gim db upgrade``) is also the role of the beat and the workers: jobs create
and drop day partitions and aggregate tables, which PostgreSQL allows only to a table's owner.
The web app needs far less: it reads run history, options and discards, records manager
operations (runs, stop and cancel requests, re-aggregation requests), edits options and
notification subscriptions, and checks users and tokens. ``gim db grant-web ROLE`` gives an
existing login role exactly that, and nothing on facts, staging, dimensions or aggregates; it
is idempotent and re-run after every upgrade (compose's migrate service does).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from gim_tasks.errors import GimError

#: table -> privileges of the web role. Anything not listed: no access at all.
WEB_PRIVILEGES: dict[str, str] = {
    "alembic_version": "SELECT",  # gim status / the configuration check: schema at head?
    "job_run": "SELECT, INSERT, UPDATE",  # M1 admissions, M6 stop and cancel
    "agg_request": "SELECT, INSERT",  # M4 re-aggregation requests
    "option_value": "SELECT, INSERT, UPDATE, DELETE",  # admins edit options
    "option_change": "SELECT, INSERT",  # ... with the change log
    "discard": "SELECT",  # a run's discards (A2, R3)
    "export_mark": "SELECT",  # the retention check
    "web_user": "SELECT, UPDATE",  # login (rehash on parameter upgrade)
    "api_token": "SELECT, UPDATE",  # last use of a token
    "notification_subscription": "SELECT, INSERT, UPDATE, DELETE",  # A3, admins
    "notification": "SELECT",  # a run's mails
}


def grant_web(engine: Engine, role: str) -> list[str]:
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
        for table, privileges in WEB_PRIVILEGES.items():
            statements.append(f"GRANT {privileges} ON {table} TO {quoted}")
        for statement in statements:
            conn.execute(sa.text(statement))
    return statements
