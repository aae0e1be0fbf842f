"""Data days (issue 37, SPEC Q1, Q2): the incident conditions ``deadline``,
``deadline-at-risk`` and ``incomplete-day`` (their subject is ``data day YYYY-MM-DD``: one open
per day and condition, by the existing partial unique index); ``gim_day_coverage(days, zone)``
(SECURITY DEFINER: the web role reads no data row), which says per fact table and aggregate
table present on which of the given local days it has a row: one statement per table, one index
probe per day inside it (the facts' day partitions and ``date_time_key``, the aggregates'
``ix_*_key``).

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-04 20:10:00
"""

from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

BEFORE = (
    "'blocked', 'failure', 'missed', 'late', 'stale-data', 'scheduler-down', 'paused', "
    "'time-limit', 'slow', 'collision-ahead'"
)
AFTER = BEFORE + ", 'deadline', 'deadline-at-risk', 'incomplete-day'"


def _check(values: str) -> None:
    op.drop_constraint(op.f("ck_incident_condition"), "incident", type_="check")
    op.create_check_constraint(
        op.f("ck_incident_condition"), "incident", f"condition IN ({values})"
    )


# The fact tables are those of this revision (a later change adds a migration).
COVERAGE = r"""
CREATE FUNCTION gim_day_coverage(p_days date[], p_tz text) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    i integer;
    present jsonb;
    result jsonb := '{}';
    facts text[] := ARRAY[
        'interaction_fact', 'interaction_segment_fact', 'agent_session_fact', 'agent_state_fact',
        'agent_state_reason_fact', 'campaign_attempt_fact'
    ];
    keyed text := 'SELECT coalesce(jsonb_agg(d::text ORDER BY d), ''[]'') FROM unnest($1) AS d '
        'WHERE EXISTS (SELECT 1 FROM %I WHERE date_time_key >= '
        'extract(epoch FROM (d::timestamp AT TIME ZONE $2))::bigint AND date_time_key < '
        'extract(epoch FROM ((d + 1)::timestamp AT TIME ZONE $2))::bigint)';
    tables text[];
    levels text[];
BEGIN
    SELECT coalesce(array_agg(c.relname ORDER BY c.relname), '{}'),
           coalesce(array_agg(upper(substring(c.relname from '_([a-z]+)$')) ORDER BY c.relname),
                    '{}')
    INTO tables, levels
    FROM pg_class AS c JOIN pg_namespace AS s ON s.oid = c.relnamespace
    WHERE s.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
      AND c.relname ~ '^agg_.*_(subhour|hour|day|month|quarter|year)$';
    -- One statement per table, an index probe per day inside it.
    FOR i IN 1 .. array_length(facts, 1) LOOP
        EXECUTE format(keyed, facts[i]) INTO present USING p_days, p_tz;
        result := result || jsonb_build_object(facts[i], present);
    END LOOP;
    FOR i IN 1 .. coalesce(array_length(tables, 1), 0) LOOP
        IF levels[i] = 'SUBHOUR' THEN
            EXECUTE format(keyed, tables[i]) INTO present USING p_days, p_tz;
        ELSIF levels[i] = 'HOUR' THEN
            EXECUTE format('SELECT coalesce(jsonb_agg(d::text ORDER BY d), ''[]'') '
                           'FROM unnest($1) AS d WHERE EXISTS (SELECT 1 FROM %I '
                           'WHERE bucket >= d::timestamp AND bucket < (d + 1)::timestamp)',
                           tables[i]) INTO present USING p_days;
        ELSE
            EXECUTE format('SELECT coalesce(jsonb_agg(d::text ORDER BY d), ''[]'') '
                           'FROM unnest($1) AS d WHERE EXISTS (SELECT 1 FROM %I '
                           'WHERE bucket = date_trunc(%L, d::timestamp))',
                           tables[i], lower(levels[i])) INTO present USING p_days;
        END IF;
        result := result || jsonb_build_object(tables[i], present);
    END LOOP;
    RETURN result;
END
$$;
"""


def upgrade() -> None:
    _check(AFTER)
    op.execute(COVERAGE)


def downgrade() -> None:
    op.execute("DROP FUNCTION gim_day_coverage(date[], text)")
    op.execute(
        "DELETE FROM incident WHERE condition IN ('deadline', 'deadline-at-risk', 'incomplete-day')"
    )
    _check(BEFORE)
