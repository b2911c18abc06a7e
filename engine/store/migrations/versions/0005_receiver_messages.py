"""people-facing sinks (Apprise): what each receiver got of each event, for retries and rate limits

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 20:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "receiver_messages",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("sink", sa.String(length=64), nullable=False),
        sa.Column("receiver", sa.String(length=200), nullable=False),
        sa.Column("delivery", sa.String(length=200), nullable=False),
        sa.Column("incident_id", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("level", sa.String(length=8), nullable=False),
        sa.Column("line", sa.Text(), nullable=False),
        sa.Column("summary", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_receiver_messages_delivery", "receiver_messages", ["sink", "receiver", "delivery"], unique=True)
    op.create_index("ix_receiver_messages_state", "receiver_messages", ["sink", "receiver", "state", "at"])


def downgrade() -> None:
    op.drop_index("ix_receiver_messages_state", table_name="receiver_messages")
    op.drop_index("ix_receiver_messages_delivery", table_name="receiver_messages")
    op.drop_table("receiver_messages")
