"""Options in PostgreSQL: ``option_value`` holds what differs from the defaults, and
``option_change`` logs every change (who, when, old, new).

All writes take one transaction-scoped advisory lock, so concurrent changes are serialised and
each change log row's old value is the value it really replaced. A value is validated before
the transaction starts; an import validates every line first and writes all or nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection, Engine

from gim_tasks.db.tables import option_change, option_value
from gim_tasks.options.registry import lookup
from gim_tasks.options.values import Change, Key, Options, parse_ini

#: pg_advisory_xact_lock key serialising option writes ("gim_opt").
OPTIONS_LOCK_KEY = 0x67696D5F6F7074


@dataclass(frozen=True)
class OptionUpdate:
    section: str
    name: str
    old: str  # effective text before (default when it was not stored)
    new: str  # effective text after

    @property
    def changed(self) -> bool:
        return self.old != self.new

    def __str__(self) -> str:
        if not self.changed:
            return f"[{self.section}] {self.name} = {self.new} (unchanged)"
        return f"[{self.section}] {self.name}: {self.old} -> {self.new}"


def load_options(conn: Connection) -> Options:
    """The options in force: stored values over defaults (bad stored values are reported by
    the configuration check, never raised here: the scheduler must keep ticking)."""
    rows = conn.execute(sa.select(option_value)).all()
    stored = {(row.section, row.name): row.value for row in rows}
    changes = {(row.section, row.name): Change(row.changed_by, row.changed_at) for row in rows}
    return Options.from_texts(stored, changes)


def _lock(conn: Connection) -> None:
    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(OPTIONS_LOCK_KEY)))


def _write(conn: Connection, key: Key, text: str | None, actor: str) -> OptionUpdate:
    section, name = key
    spec = lookup(section, name)
    old_row = conn.execute(
        sa.select(option_value.c.value).where(
            option_value.c.section == section, option_value.c.name == name
        )
    ).scalar_one_or_none()
    old = spec.default if old_row is None else old_row
    if text is None:
        conn.execute(
            sa.delete(option_value).where(
                option_value.c.section == section, option_value.c.name == name
            )
        )
        new = spec.default
    else:
        statement = insert(option_value).values(
            section=section, name=name, value=text, changed_by=actor, changed_at=sa.func.now()
        )
        conn.execute(
            statement.on_conflict_do_update(
                index_elements=["section", "name"],
                set_={"value": text, "changed_by": actor, "changed_at": sa.func.now()},
            )
        )
        new = text
    conn.execute(
        sa.insert(option_change).values(
            section=section, name=name, old_value=old, new_value=new, changed_by=actor
        )
    )
    return OptionUpdate(section, name, old, new)


def set_option(engine: Engine, section: str, name: str, text: str, actor: str) -> OptionUpdate:
    """Validate and store one option; raises ``OptionError`` (nothing stored) when invalid."""
    text = text.strip()
    lookup(section, name).parse(text)
    with engine.begin() as conn:
        _lock(conn)
        return _write(conn, (section, name), text, actor)


def unset_option(engine: Engine, section: str, name: str, actor: str) -> OptionUpdate:
    """Return one option to its default."""
    lookup(section, name)
    with engine.begin() as conn:
        _lock(conn)
        return _write(conn, (section, name), None, actor)


def import_options(engine: Engine, text: str, actor: str, source: str) -> list[OptionUpdate]:
    """Store every option of an INI text that differs from its current value, in one
    transaction: all of them or, on any problem, none (``parse_ini`` raises before the
    transaction starts)."""
    values = parse_ini(text, source)
    with engine.begin() as conn:
        _lock(conn)
        current = load_options(conn)
        # Only real changes are written: importing an export again changes nothing and keeps
        # each option's last changer (A1 "Creator").
        return [
            _write(conn, key, value, actor)
            for key, value in values.items()
            if current.texts[key] != value
        ]


def option_history(conn: Connection, limit: int = 50) -> list[sa.Row]:
    """The newest option changes first."""
    return list(
        conn.execute(
            sa.select(option_change).order_by(option_change.c.id.desc()).limit(limit)
        ).all()
    )
