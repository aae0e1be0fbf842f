"""Alembic, driven from code: ``gim db upgrade`` and ``gim db check``."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from gim_tasks.db.engine import connect

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "no migrations found"
    return head


@dataclass(frozen=True)
class SchemaState:
    current: str | None
    head: str

    @property
    def at_head(self) -> bool:
        return self.current == self.head

    def describe(self) -> str:
        if self.at_head:
            return f"at head ({self.head})"
        if self.current is None:
            return f"empty (no migration applied); head is {self.head}: run `gim db upgrade`"
        return f"at {self.current}, head is {self.head}: run `gim db upgrade`"


def schema_state(engine: Engine) -> SchemaState:
    with connect(engine) as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    return SchemaState(current=current, head=head_revision())


#: Alembic installs its ``context`` and ``op`` proxies as module globals for the length of a
#: command, so two threads of one process running commands at once corrupt each other
#: (``KeyError: 'config'``; the reliability suite's lanes did). One command per process at a
#: time; across processes the advisory lock of ``env.py`` serialises them.
_ALEMBIC = threading.Lock()


def _run(engine: Engine, action: str, revision: str, actor: str = "gim-tasks") -> SchemaState:
    """Run an Alembic command on one connection. Safe to run from several threads (the lock
    above) and several processes at once (``env.py`` holds a PostgreSQL advisory lock for the
    whole migration). A change of revision is audited (P6) once the audit table exists, in a
    transaction right after the migrations' own (each migration commits by itself)."""
    config = alembic_config()
    before = schema_state(engine).current  # its own connection: nothing carried into env.py
    with _ALEMBIC, connect(engine) as conn:
        config.attributes["connection"] = conn
        getattr(command, action)(config, revision)
        after = MigrationContext.configure(conn).get_current_revision()
        if after != before and conn.execute(sa.text("SELECT to_regclass('audit_event')")).scalar():
            from gim_tasks.monitor import audit

            audit.record(
                conn,
                audit.Action.SCHEMA_UPGRADE,
                "schema",
                actor,
                before={"revision": before},
                after={"revision": after, "command": action},
            )
        conn.commit()
    return schema_state(engine)


def upgrade(engine: Engine, revision: str = "head", actor: str = "gim-tasks") -> SchemaState:
    """Migrate to ``revision`` (default: the newest). At the head, the DATE_TIME calendar is
    then filled ahead, as GIM's initialization does, so that a fresh install passes the
    configuration check's calendar item (C2) before the first maintenance run."""
    state = _run(engine, "upgrade", revision, actor)
    if state.at_head:
        from gim_tasks.jobs.maintain import initialize_calendar

        sync_option_keys(engine)
        initialize_calendar(engine)
    return state


def sync_option_keys(engine: Engine) -> int:
    """``option_key`` := the registry's options (site jobs' included): the only ones the
    database function ``gim_write_option`` writes (issue 41). Returns how many."""
    import sqlalchemy as sa
    from sqlalchemy.dialects.postgresql import insert

    from gim_tasks.db.tables import option_key
    from gim_tasks.options.registry import OPTIONS

    keys = [{"section": spec.section, "name": spec.name} for spec in OPTIONS]
    # Safe beside another pod's upgrade: no key is deleted that the registry has, and an
    # insert of a key already there does nothing (no unique violation between two pods).
    with engine.begin() as conn:
        conn.execute(
            sa.delete(option_key).where(
                sa.tuple_(option_key.c.section, option_key.c.name).not_in(
                    [(k["section"], k["name"]) for k in keys]
                )
            )
        )
        conn.execute(insert(option_key).on_conflict_do_nothing(), keys)
    return len(keys)


def downgrade(engine: Engine, revision: str) -> SchemaState:
    """Migrate back to ``revision`` (``base``: no tables)."""
    return _run(engine, "downgrade", revision)
