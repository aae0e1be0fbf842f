"""Options in PostgreSQL: ``option_value`` holds what differs from the defaults, and
``option_change`` logs every change (who, when, old, new).

All writes take one transaction-scoped advisory lock, so concurrent changes are serialised and
each change log row's old value is the value it really replaced. A value is validated before
the transaction starts; an import validates every line first and writes all or nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from gim_tasks.db import locks
from gim_tasks.db.tables import option_change, option_value
from gim_tasks.monitor import audit
from gim_tasks.options.paths import check_confined
from gim_tasks.options.registry import lookup
from gim_tasks.options.values import Change, Key, Options, read_ini


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
    locks.hold(conn, locks.OPTIONS)


def _write(conn: Connection, key: Key, text: str | None, actor: str) -> OptionUpdate:
    """Store (or, with ``text`` None, remove) one option and its change-log row, through the
    database function ``gim_write_option`` (SECURITY DEFINER, migration 0010): the value and
    its log row are written together, and the web's role, which may call the function but not
    write either table, cannot forge the log."""
    section, name = key
    spec = lookup(section, name)
    row = conn.execute(
        sa.text(
            "SELECT old_value, new_value FROM gim_write_option(:section, :name, :value, "
            ":actor, :default)"
        ),
        {"section": section, "name": name, "value": text, "actor": actor, "default": spec.default},
    ).one()
    return OptionUpdate(section, name, row.old_value, row.new_value)


def set_option(
    engine: Engine,
    section: str,
    name: str,
    text: str,
    actor: str,
    output_base: Path | None = None,
) -> OptionUpdate:
    """Validate and store one option; raises ``OptionError`` (nothing stored) when invalid.
    With ``output_base`` (GIM_OUTPUT_DIRECTORY), a directory option must lie under it."""
    text = text.strip()
    lookup(section, name).parse(text)
    check_confined(section, name, text, output_base)
    with engine.begin() as conn:
        _lock(conn)
        return _audited(
            conn, audit.Action.OPTION_SET, _write(conn, (section, name), text, actor), actor
        )


def _audited(
    conn: Connection, action: audit.Action, update: OptionUpdate, actor: str
) -> OptionUpdate:
    audit.record(
        conn,
        action,
        f"[{update.section}] {update.name}",
        actor,
        before={"value": update.old},
        after={"value": update.new},
    )
    return update


def unset_option(engine: Engine, section: str, name: str, actor: str) -> OptionUpdate:
    """Return one option to its default."""
    lookup(section, name)
    with engine.begin() as conn:
        _lock(conn)
        return _audited(
            conn, audit.Action.OPTION_UNSET, _write(conn, (section, name), None, actor), actor
        )


def import_options(
    engine: Engine,
    text: str,
    actor: str,
    source: str,
    output_base: Path | None = None,
    notes: list[str] | None = None,
) -> list[OptionUpdate]:
    """Store every option of an INI text (a GIM option file too) that differs from its current
    value, in one transaction: all of them or, on any problem, none (``read_ini`` raises before
    the transaction starts). ``notes`` receives what the operator should read: GIM options not
    used here, options moved, Java time zones mapped."""
    read = read_ini(text, source)
    values = read.values
    if notes is not None:
        notes.extend(read.notes)
    for (section, name), value in values.items():
        check_confined(section, name, value, output_base)
    with engine.begin() as conn:
        _lock(conn)
        current = load_options(conn)
        # Only real changes are written: importing an export again changes nothing and keeps
        # each option's last changer (A1 "Creator").
        written = [
            _write(conn, key, value, actor)
            for key, value in values.items()
            if current.texts[key] != value
        ]
        audit.record(
            conn,
            audit.Action.OPTION_IMPORT,
            source,
            actor,
            before={f"[{u.section}] {u.name}": u.old for u in written},
            after={f"[{u.section}] {u.name}": u.new for u in written},
        )
        return written


def option_history(conn: Connection, limit: int = 50) -> list[sa.Row]:
    """The newest option changes first."""
    return list(
        conn.execute(
            sa.select(option_change).order_by(option_change.c.id.desc()).limit(limit)
        ).all()
    )
