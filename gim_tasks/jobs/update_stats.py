"""Job_UpdateStats: PostgreSQL supplementary maintenance of the Info Mart (SPEC S6).

ANALYZE every table whose rows changed since its last analyze by more than
``50 + 10 %`` of its size (``n_mod_since_analyze`` in ``pg_stat_user_tables``), and plain VACUUM
every table whose dead rows pass ``50 + 20 %`` of its size (the autovacuum defaults). Plain
VACUUM and ANALYZE take SHARE UPDATE EXCLUSIVE locks, which never block ETL reads or writes;
VACUUM FULL is never used. Partitions are handled one by one (their parent holds no rows).
"""

from __future__ import annotations

import logging

import psycopg
from psycopg import sql

from gim_tasks.db.sessions import libpq_url
from gim_tasks.jobs.base import JobContext

log = logging.getLogger("gim_tasks.jobs.update_stats")

ANALYZE_BASE, ANALYZE_SCALE = 50, 0.10
VACUUM_BASE, VACUUM_SCALE = 50, 0.20

CANDIDATES = """
SELECT s.schemaname, s.relname, s.n_mod_since_analyze, s.n_dead_tup,
       greatest(c.reltuples, 0)::bigint AS tuples
FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
WHERE s.schemaname = current_schema()
ORDER BY s.relname
"""


def run(ctx: JobContext) -> None:
    url = libpq_url(ctx.mart.url.render_as_string(hide_password=False))
    tables: dict[str, list[str]] = {}
    # VACUUM cannot run inside a transaction block: an autocommit connection of its own.
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(CANDIDATES).fetchall()
        for schema, name, modified, dead, tuples in rows:
            ctx.stop.check()
            actions = []
            if dead > VACUUM_BASE + VACUUM_SCALE * tuples:
                conn.execute(sql.SQL("VACUUM {}").format(sql.Identifier(schema, name)))
                actions.append("vacuum")
            if modified > ANALYZE_BASE + ANALYZE_SCALE * tuples:
                conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(schema, name)))
                actions.append("analyze")
            if actions:
                tables[name] = actions
                ctx.counts.written += 1
                ctx.progress("update stats", len(tables), None)
        ctx.counts.read = len(rows)
    ctx.counts.summary = {"tables": tables, "tables_checked": len(rows)}
    log.info("update stats: %d of %d tables analyzed or vacuumed", len(tables), len(rows))
