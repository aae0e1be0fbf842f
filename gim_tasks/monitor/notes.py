"""Notes on runs, firings and incidents, and acknowledging an incident (SPEC P7).

A note is one row of ``note`` and one audit row (``note``), in one transaction. Acknowledging
sets ``incident.acknowledged_at/by`` on an open incident (once: a second ack is refused,
naming who acknowledged it) and, with a note, adds it in the same transaction. While an open
``failure`` incident is acknowledged, the run-letter trigger (migration 0019) queues no error
letter for the job's further failing runs: they were its repeat notices; its occurrence count
still rises, and it still resolves by itself (and says so) when a run succeeds.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection, Engine

from gim_tasks.db.tables import firing, incident, job_run, note
from gim_tasks.errors import Conflict, GimError, NotFound
from gim_tasks.monitor import audit

MAX_NOTE = 2000


class NoteOn(StrEnum):
    RUN = "run"
    FIRING = "firing"
    INCIDENT = "incident"


def _text(text: str) -> str:
    text = (text or "").strip()
    if not text:
        raise GimError("a note needs text (1 to 2000 characters)")
    if len(text) > MAX_NOTE:
        raise GimError(f"a note is at most {MAX_NOTE} characters (this one has {len(text)})")
    return text


def _target(conn: Connection, kind: NoteOn, target: str) -> str:
    """The target's canonical id, or NotFound naming what is wrong."""
    if kind == NoteOn.FIRING:
        found = conn.execute(
            sa.select(firing.c.firing_id).where(firing.c.firing_id == target)
        ).scalar_one_or_none()
        if found is None:
            raise NotFound(f"no firing {target!r} in the ledger (gim firings lists them)")
        return str(found)
    if not target.strip().isdigit() or len(target.strip()) > 18:
        raise GimError(f"a {kind} id is a number, got {target!r}")
    table = job_run if kind == NoteOn.RUN else incident
    number = int(target)
    if conn.execute(sa.select(table.c.id).where(table.c.id == number)).scalar_one_or_none() is None:
        raise NotFound(f"{kind} {number} does not exist")
    return str(number)


def _add(conn: Connection, kind: NoteOn, target: str, text: str, actor: str) -> int:
    note_id = conn.execute(
        sa.insert(note)
        .values(kind=kind.value, target=target, text=text, actor=actor)
        .returning(note.c.id)
    ).scalar_one()
    audit.record(conn, audit.Action.NOTE, f"{kind}:{target}", actor, after={"text": text})
    return int(note_id)


def add_note(engine: Engine, kind: NoteOn | str, target: str | int, text: str, actor: str) -> int:
    """P7: add a note; returns its id. Refused (nothing stored) for an unknown target or an
    empty or too long text."""
    try:
        kind = NoteOn(kind)
    except ValueError:
        raise GimError(f"notes go on run, firing or incident, not {kind!r}") from None
    text = _text(text)
    with engine.begin() as conn:
        return _add(conn, kind, _target(conn, kind, str(target)), text, actor)


def acknowledge(engine: Engine, incident_id: int, actor: str, text: str | None = None) -> str:
    """P7: acknowledge an open incident (its repeat notices stop), with an optional note."""
    text = _text(text) if text else None
    with engine.begin() as conn:
        # The row lock orders two acknowledgements: the second sees the first and is refused.
        row = conn.execute(
            sa.select(incident).where(incident.c.id == incident_id).with_for_update()
        ).one_or_none()
        if row is None:
            raise NotFound(f"incident {incident_id} does not exist (gim alerts lists them)")
        if row.resolved_at is not None:
            raise Conflict(f"incident {incident_id} is resolved already: nothing to acknowledge")
        if row.acknowledged_at is not None:
            raise Conflict(
                f"incident {incident_id} was acknowledged by {row.acknowledged_by} at "
                f"{row.acknowledged_at:%Y-%m-%d %H:%M:%S %Z}"
            )
        conn.execute(
            sa.update(incident)
            .where(incident.c.id == incident_id)
            .values(acknowledged_at=sa.func.now(), acknowledged_by=actor)
        )
        audit.record(
            conn,
            audit.Action.INCIDENT_ACK,
            incident_id,
            actor,
            reason=text,
            before={"job": row.job, "condition": row.condition, "occurrences": row.firings},
        )
        if text:
            _add(conn, NoteOn.INCIDENT, str(incident_id), text, actor)
    return f"incident {incident_id} ({row.condition}) acknowledged by {actor}"


def notes_of(
    conn: Connection, kind: NoteOn, targets: Iterable[str | int]
) -> dict[str, list[dict[str, Any]]]:
    """The notes of each target, oldest first (one indexed query)."""
    wanted = sorted({str(t) for t in targets})
    found: dict[str, list[dict[str, Any]]] = {}
    if not wanted:
        return found
    # One array parameter, not one per target: a Timeline day asks for ~600 firings, and
    # psycopg parsed a statement of 600 placeholders on every call (issue 40).
    rows = conn.execute(
        sa.select(note.c.target, note.c.text, note.c.actor, note.c.at)
        .where(
            note.c.kind == kind.value,
            note.c.target == sa.any_(sa.cast(sa.literal(wanted), ARRAY(sa.Text))),
        )
        .order_by(note.c.id)
    ).all()
    for row in rows:
        found.setdefault(row.target, []).append(
            {"text": row.text, "actor": row.actor, "at": row.at.isoformat()}
        )
    return found
