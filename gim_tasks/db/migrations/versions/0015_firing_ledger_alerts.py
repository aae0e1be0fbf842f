"""The firing ledger, incidents of every condition, webhooks and alert deliveries, data
freshness (SPEC O1-O4; issue 20).

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30 22:10:00

- ``firing``: one row per planned firing (firing id), written by the beat at least 24 h ahead,
  with its verdict once decided (``on-time``, ``late``, ``held``, ``skipped``, ``blocked``,
  ``missed``).
- ``incident``: conditions ``failure``, ``missed``, ``late``, ``stale-data`` and
  ``scheduler-down`` besides ``blocked``; ``run_id`` optional (a silent scheduler has no run).
- ``webhook``: configured receivers, optionally limited to some conditions.
- ``alert``: one delivery of an incident's ``opened`` or ``resolved`` message to one mail
  recipient or webhook, retried with back-off; unique per incident, event, channel, target.
- ``gim_data_freshness()``: the newest data time per fact table and aggregate level
  (SECURITY DEFINER: the web role reads no data row).
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

CONDITIONS = "'blocked', 'failure', 'missed', 'late', 'stale-data', 'scheduler-down'"
VERDICTS = "'on-time', 'late', 'held', 'skipped', 'blocked', 'missed'"

# Fact tables: the newest start_ts, read among the rows of the newest 15-minute interval (each
# day partition's date_time_key index finds them), as epoch seconds. Aggregate levels: SUBHOUR
# tables are keyed by date_time_key (epoch), the others by ``bucket``, the local wall time of
# the bucket's start; the newest over the hierarchies' tables of each level. The fact tables
# are those of this revision.
DATA_FRESHNESS = r"""
CREATE FUNCTION gim_data_freshness() RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    name text;
    level text;
    newest bigint;
    newest_at double precision;
    newest_bucket timestamp;
    facts jsonb := '{}';
    levels jsonb := '{}';
BEGIN
    FOREACH name IN ARRAY ARRAY[
        'interaction_fact', 'interaction_segment_fact', 'agent_session_fact', 'agent_state_fact',
        'agent_state_reason_fact', 'campaign_attempt_fact'
    ] LOOP
        EXECUTE format(
            'SELECT extract(epoch FROM max(start_ts)) FROM %I '
            'WHERE date_time_key = (SELECT max(date_time_key) FROM %I)', name, name
        ) INTO newest_at;
        facts := facts || jsonb_build_object(name, newest_at);
    END LOOP;
    FOR name, level IN
        SELECT c.relname, upper(substring(c.relname from '_([a-z]+)$'))
        FROM pg_class AS c JOIN pg_namespace AS s ON s.oid = c.relnamespace
        WHERE s.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
          AND c.relname ~ '^agg_.*_(subhour|hour|day|month|quarter|year)$'
    LOOP
        IF level = 'SUBHOUR' THEN
            EXECUTE format('SELECT max(date_time_key) FROM %I', name) INTO newest;
            IF newest IS NOT NULL
               AND (NOT levels ? level OR (levels ->> level)::bigint < newest) THEN
                levels := levels || jsonb_build_object(level, newest);
            END IF;
        ELSE
            EXECUTE format('SELECT max(bucket) FROM %I', name) INTO newest_bucket;
            IF newest_bucket IS NOT NULL
               AND (NOT levels ? level OR (levels ->> level)::timestamp < newest_bucket) THEN
                levels := levels || jsonb_build_object(level, newest_bucket);
            END IF;
        END IF;
    END LOOP;
    RETURN jsonb_build_object('facts', facts, 'levels', levels);
END
$$;
REVOKE ALL ON FUNCTION gim_data_freshness() FROM PUBLIC;
"""


def upgrade() -> None:
    op.create_table(
        "firing",
        sa.Column("firing_id", sa.Text(), nullable=False),
        sa.Column("stream", sa.Text(), nullable=False),
        sa.Column("job", sa.Text(), nullable=False),
        sa.Column("planned_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("verdict", sa.Text()),
        sa.Column("decided_at", sa.DateTime(timezone=True)),
        sa.Column("lag_seconds", sa.Float()),
        sa.Column("reason", sa.Text()),
        sa.Column(
            "run_id",
            sa.BigInteger(),
            sa.ForeignKey("job_run.id", ondelete="SET NULL", name=op.f("fk_firing_run_id_job_run")),
        ),
        sa.CheckConstraint(f"verdict IN ({VERDICTS})", name=op.f("ck_firing_verdict")),
        sa.PrimaryKeyConstraint("firing_id", name=op.f("pk_firing")),
    )
    op.create_index("ix_firing_planned_at", "firing", ["planned_at"])
    op.create_index("ix_firing_job_planned_at", "firing", ["job", "planned_at"])
    op.create_index(
        "ix_firing_undecided",
        "firing",
        ["planned_at"],
        postgresql_where=sa.text("verdict IS NULL"),
    )
    op.alter_column("incident", "run_id", nullable=True)
    op.drop_constraint(op.f("ck_incident_condition"), "incident", type_="check")
    op.create_check_constraint(
        op.f("ck_incident_condition"), "incident", f"condition IN ({CONDITIONS})"
    )
    op.create_table(
        "webhook",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column(
            "events",
            postgresql.ARRAY(sa.Text()),
            nullable=False,
            server_default=sa.text("'{}'"),
        ),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("now()"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook")),
        sa.UniqueConstraint("url", name=op.f("uq_webhook_url")),
    )
    op.create_table(
        "alert",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column(
            "incident_id",
            sa.BigInteger(),
            sa.ForeignKey(
                "incident.id", ondelete="CASCADE", name=op.f("fk_alert_incident_id_incident")
            ),
            nullable=False,
        ),
        sa.Column("event", sa.Text(), nullable=False),
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False, server_default=sa.text("'pending'")),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column(
            "next_attempt_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("now()"),
        ),
        sa.Column("last_error", sa.Text()),
        sa.Column("sent_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("event IN ('opened', 'resolved')", name=op.f("ck_alert_event")),
        sa.CheckConstraint("channel IN ('mail', 'webhook')", name=op.f("ck_alert_channel")),
        sa.CheckConstraint("state IN ('pending', 'sent', 'failed')", name=op.f("ck_alert_state")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert")),
        sa.UniqueConstraint(
            "incident_id", "event", "channel", "target", name=op.f("uq_alert_delivery")
        ),
    )
    op.create_index(
        "ix_alert_pending",
        "alert",
        ["next_attempt_at"],
        postgresql_where=sa.text("state = 'pending'"),
    )
    op.execute(DATA_FRESHNESS)


def downgrade() -> None:
    op.execute("DROP FUNCTION gim_data_freshness()")
    op.drop_index("ix_alert_pending", table_name="alert")
    op.drop_table("alert")
    op.drop_table("webhook")
    op.execute("DELETE FROM incident WHERE condition <> 'blocked' OR run_id IS NULL")
    op.drop_constraint(op.f("ck_incident_condition"), "incident", type_="check")
    op.create_check_constraint(
        op.f("ck_incident_condition"), "incident", "condition IN ('blocked')"
    )
    op.alter_column("incident", "run_id", nullable=False)
    op.drop_index("ix_firing_undecided", table_name="firing")
    op.drop_index("ix_firing_job_planned_at", table_name="firing")
    op.drop_index("ix_firing_planned_at", table_name="firing")
    op.drop_table("firing")
