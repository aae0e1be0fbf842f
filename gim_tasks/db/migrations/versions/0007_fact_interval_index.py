"""Index every fact table on date_time_key (aggregation reads changed intervals).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22 22:55:00
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

FACTS = (
    "interaction_fact",
    "interaction_segment_fact",
    "agent_session_fact",
    "agent_state_fact",
    "agent_state_reason_fact",
    "campaign_attempt_fact",
)


def upgrade() -> None:
    for fact in FACTS:  # on the partitioned parent: every partition gets it
        op.create_index(f"ix_{fact}_date_time_key", fact, ["date_time_key"])


def downgrade() -> None:
    for fact in FACTS:
        op.drop_index(f"ix_{fact}_date_time_key", table_name=fact)
