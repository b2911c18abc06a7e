"""cameras' learned heads in the shared store: a scale-out worker takes up the heads of the sites it owns

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 23:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "camera_heads",
        sa.Column("site", sa.String(length=128), nullable=False),
        sa.Column("camera", sa.String(length=128), nullable=False),
        sa.Column("heads", sa.JSON(), nullable=False),
        sa.Column("examples", sa.LargeBinary(), nullable=True),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("site", "camera"),
    )


def downgrade() -> None:
    op.drop_table("camera_heads")
