"""The body of the recipe's site job ``Job_CheckMartGIM`` (see ``check_mart.py``)."""

from __future__ import annotations

import sqlalchemy as sa

from gim_tasks.jobs.base import JobContext


def run(ctx: JobContext) -> None:
    """Count the interaction facts (a read-only check a site might schedule)."""
    with ctx.transaction() as conn:
        facts = conn.execute(sa.text("SELECT count(*) FROM interaction_fact")).scalar_one()
    ctx.counts.read = int(facts)
    ctx.counts.summary = {"interaction_facts": int(facts)}
