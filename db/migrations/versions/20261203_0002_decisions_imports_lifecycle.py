"""decisions, imported image variants, study life cycle

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03 16:50:00

- variants.kind gains 'images' (imported files); votes.choice gains 'both_bad'.
- studies: life cycle draft -> generating -> open -> closed -> archived ('ready' becomes 'open');
  allocation settings stop_when_settled (existing studies keep the full grid: False), vote_cap,
  alpha, delta, reason_tags.
- votes: tags, allocation_rule, comparison_status.
- annotator_exclusions: reversible exclusion of an annotator from a study's tallies.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIVE_VOTE = sa.text('superseded_at IS NULL')


def upgrade() -> None:
    with op.batch_alter_table('variants') as batch_op:
        batch_op.drop_constraint(op.f('ck_variants_kind'), type_='check')
        batch_op.create_check_constraint('kind', "kind IN ('reference', 'vt', 'legacy', 'images')")

    with op.batch_alter_table('studies') as batch_op:
        batch_op.drop_constraint(op.f('ck_studies_status'), type_='check')
    op.execute("UPDATE studies SET status = 'open' WHERE status = 'ready'")
    with op.batch_alter_table('studies') as batch_op:
        batch_op.create_check_constraint(
            'status', "status IN ('draft', 'generating', 'open', 'closed', 'archived')"
        )
        batch_op.add_column(sa.Column('stop_when_settled', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('vote_cap', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('alpha', sa.Float(), nullable=False, server_default='0.05'))
        batch_op.add_column(sa.Column('delta', sa.Float(), nullable=False, server_default='0.1'))
        batch_op.add_column(sa.Column('reason_tags', sa.JSON(), nullable=False, server_default='[]'))
        batch_op.create_check_constraint('alpha', 'alpha > 0 AND alpha < 1')
        batch_op.create_check_constraint('delta', 'delta > 0 AND delta < 0.5')
        batch_op.create_check_constraint('vote_cap', 'vote_cap IS NULL OR vote_cap > 0')
    # The defaults above fill existing rows; new rows get theirs from the models.
    with op.batch_alter_table('studies') as batch_op:
        for column in ('stop_when_settled', 'alpha', 'delta', 'reason_tags'):
            batch_op.alter_column(column, server_default=None)

    # SQLite rebuilds the table: drop the partial unique index first and recreate it after, so
    # its WHERE clause survives whatever the reflection of the old table keeps.
    op.drop_index('uq_votes_live_annotator_pair', table_name='votes')
    with op.batch_alter_table('votes') as batch_op:
        batch_op.drop_constraint(op.f('ck_votes_choice'), type_='check')
        batch_op.create_check_constraint('choice', "choice IN ('left', 'right', 'tie', 'both_bad')")
        batch_op.add_column(sa.Column('tags', sa.JSON(), nullable=False, server_default='[]'))
        batch_op.add_column(sa.Column('allocation_rule', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('comparison_status', sa.String(length=16), nullable=True))
        batch_op.create_check_constraint(
            'allocation_rule',
            "allocation_rule IS NULL OR allocation_rule IN ('grid', 'warmup', 'open', 'qc')",
        )
        batch_op.create_check_constraint(
            'comparison_status',
            "comparison_status IS NULL OR comparison_status IN "
            "('decided', 'equivalent', 'capped', 'open')",
        )
    with op.batch_alter_table('votes') as batch_op:
        batch_op.alter_column('tags', server_default=None)
    op.create_index(
        'uq_votes_live_annotator_pair', 'votes', ['annotator_id', 'pair_id'], unique=True,
        sqlite_where=LIVE_VOTE, postgresql_where=LIVE_VOTE,
    )

    op.create_table('annotator_exclusions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('study_id', sa.Integer(), nullable=False),
    sa.Column('annotator_id', sa.Integer(), nullable=False),
    sa.Column('excluded_by_id', sa.Integer(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('excluded_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('restored_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['annotator_id'], ['annotators.id'], name=op.f('fk_annotator_exclusions_annotator_id_annotators')),
    sa.ForeignKeyConstraint(['excluded_by_id'], ['annotators.id'], name=op.f('fk_annotator_exclusions_excluded_by_id_annotators')),
    sa.ForeignKeyConstraint(['study_id'], ['studies.id'], name=op.f('fk_annotator_exclusions_study_id_studies'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_annotator_exclusions'))
    )
    with op.batch_alter_table('annotator_exclusions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_annotator_exclusions_study_id'), ['study_id'], unique=False)
        batch_op.create_index('uq_annotator_exclusions_live', ['study_id', 'annotator_id'], unique=True, sqlite_where=sa.text('restored_at IS NULL'), postgresql_where=sa.text('restored_at IS NULL'))


def downgrade() -> None:
    with op.batch_alter_table('annotator_exclusions', schema=None) as batch_op:
        batch_op.drop_index('uq_annotator_exclusions_live', sqlite_where=sa.text('restored_at IS NULL'), postgresql_where=sa.text('restored_at IS NULL'))
        batch_op.drop_index(batch_op.f('ix_annotator_exclusions_study_id'))
    op.drop_table('annotator_exclusions')

    op.drop_index('uq_votes_live_annotator_pair', table_name='votes')
    op.execute("UPDATE votes SET choice = 'tie' WHERE choice = 'both_bad'")
    with op.batch_alter_table('votes') as batch_op:
        batch_op.drop_constraint(op.f('ck_votes_comparison_status'), type_='check')
        batch_op.drop_constraint(op.f('ck_votes_allocation_rule'), type_='check')
        batch_op.drop_column('comparison_status')
        batch_op.drop_column('allocation_rule')
        batch_op.drop_column('tags')
        batch_op.drop_constraint(op.f('ck_votes_choice'), type_='check')
        batch_op.create_check_constraint('choice', "choice IN ('left', 'right', 'tie')")
    op.create_index(
        'uq_votes_live_annotator_pair', 'votes', ['annotator_id', 'pair_id'], unique=True,
        sqlite_where=LIVE_VOTE, postgresql_where=LIVE_VOTE,
    )

    with op.batch_alter_table('studies') as batch_op:
        batch_op.drop_constraint(op.f('ck_studies_vote_cap'), type_='check')
        batch_op.drop_constraint(op.f('ck_studies_delta'), type_='check')
        batch_op.drop_constraint(op.f('ck_studies_alpha'), type_='check')
        for column in ('reason_tags', 'delta', 'alpha', 'vote_cap', 'stop_when_settled'):
            batch_op.drop_column(column)
        batch_op.drop_constraint(op.f('ck_studies_status'), type_='check')
    op.execute("UPDATE studies SET status = 'ready' WHERE status IN ('open', 'closed', 'archived')")
    with op.batch_alter_table('studies') as batch_op:
        batch_op.create_check_constraint('status', "status IN ('draft', 'generating', 'ready')")

    op.execute("DELETE FROM variants WHERE kind = 'images'")  # fails loudly if still referenced
    with op.batch_alter_table('variants') as batch_op:
        batch_op.drop_constraint(op.f('ck_variants_kind'), type_='check')
        batch_op.create_check_constraint('kind', "kind IN ('reference', 'vt', 'legacy')")
