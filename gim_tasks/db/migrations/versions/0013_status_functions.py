"""ETL and aggregation status readable by the web role (issue 18 item 5, issue 17).

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30 19:00:00

The web role reads nothing of staging, facts or aggregates (least privilege, issue 11), yet
the ETL and aggregation status pages show how many rows wait in staging, how many facts each
IDB loaded and how fresh each hierarchy is. Two SECURITY DEFINER functions return exactly
those numbers (counts and timestamps, never a row), so the web role may call them and the CLI
(``gim etl status``, ``gim aggregate status``) calls the same ones: one implementation.

- ``gim_etl_counts()``: rows past each staging table's Transform mark per IDB, fact rows per
  table, segment facts and discards per IDB, newest segment fact and newest staged segment.
- ``gim_aggregate_freshness()``: the newest SUBHOUR interval of every aggregate table present
  (they are created by the job, not by migrations, so they are found in the catalog).
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

# Staging sources and fact tables are those of this revision (a later change adds a migration).
ETL_COUNTS = """
CREATE FUNCTION gim_etl_counts() RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    source text;
    part jsonb;
    fact_rows bigint;
    pending jsonb := '[]';
    facts jsonb := '{}';
BEGIN
    FOREACH source IN ARRAY ARRAY[
        'interaction', 'party_segment', 'agent_session', 'agent_state', 'campaign_attempt'
    ] LOOP
        EXECUTE format(
            'SELECT coalesce(jsonb_agg(jsonb_build_object(''idb_id'', idb_id, ''table'', %L, '
            '''rows'', n) ORDER BY idb_id), ''[]'') FROM (SELECT idb_id, count(*) AS n FROM %I '
            'WHERE load_seq > coalesce((SELECT last_load_seq FROM transform_mark '
            'WHERE source = %L), 0) GROUP BY idb_id) AS p',
            source, 'stg_' || source, 'stg_' || source) INTO part;
        pending := pending || part;
    END LOOP;
    FOREACH source IN ARRAY ARRAY[
        'interaction_fact', 'interaction_segment_fact', 'agent_session_fact', 'agent_state_fact',
        'agent_state_reason_fact', 'campaign_attempt_fact'
    ] LOOP
        EXECUTE format('SELECT count(*) FROM %I', source) INTO fact_rows;
        facts := facts || jsonb_build_object(source, fact_rows);
    END LOOP;
    RETURN jsonb_build_object(
        'pending', pending,
        'facts', facts,
        'segment_facts', (SELECT coalesce(jsonb_object_agg(idb_id, n), '{}') FROM
            (SELECT idb_id, count(*) AS n FROM interaction_segment_fact GROUP BY idb_id) AS f),
        'segment_discards', (SELECT coalesce(jsonb_object_agg(idb_id, n), '{}') FROM
            (SELECT idb_id, count(*) AS n FROM discard
             WHERE source_table = 'interaction_segment_fact' GROUP BY idb_id) AS d),
        'newest_fact', (SELECT max(start_ts) FROM interaction_segment_fact),
        'newest_staged', (SELECT max(queued_at) FROM stg_party_segment));
END
$$;
REVOKE ALL ON FUNCTION gim_etl_counts() FROM PUBLIC;
"""

AGGREGATE_FRESHNESS = r"""
CREATE FUNCTION gim_aggregate_freshness() RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    name text;
    newest bigint;
    result jsonb := '{}';
BEGIN
    FOR name IN
        SELECT c.relname FROM pg_class AS c JOIN pg_namespace AS s ON s.oid = c.relnamespace
        WHERE s.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
          AND c.relname LIKE 'agg\_%\_subhour' ORDER BY c.relname
    LOOP
        EXECUTE format('SELECT max(date_time_key) FROM %I', name) INTO newest;
        result := result || jsonb_build_object(name, newest);
    END LOOP;
    RETURN result;
END
$$;
REVOKE ALL ON FUNCTION gim_aggregate_freshness() FROM PUBLIC;
"""


def upgrade() -> None:
    op.execute(ETL_COUNTS)
    op.execute(AGGREGATE_FRESHNESS)


def downgrade() -> None:
    op.execute("DROP FUNCTION gim_aggregate_freshness()")
    op.execute("DROP FUNCTION gim_etl_counts()")
