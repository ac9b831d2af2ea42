"""annotators.token_from_env: the account's key is the ARENA_ADMIN_TOKEN secret

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 20:20:00

Start-up gives the bootstrap admin the secret's hash and sets this flag; when the variable is
later unset, the flagged account's key is replaced (a new one-time link is printed), so a secret
that is no longer in force stops working. Existing accounts start unflagged: an install whose
secret was applied before this revision is flagged at its next start with the variable set.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('annotators') as batch_op:
        batch_op.add_column(
            sa.Column('token_from_env', sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table('annotators') as batch_op:
        batch_op.drop_column('token_from_env')
