"""The data layer: every database query, by topic; a `Session` first, never commit (the caller
owns the transaction, as in `with session_factory(engine).begin() as s:`).

Topic modules: `studies` (studies, pairs), `votes` (record, undo, progress), `results` (live
votes as the interchange frame), `variants` (variants, checkpoints), `accounts`
(annotators as listed). The names below are the package's public surface.
"""

from db.queries.accounts import annotator_rows
from db.queries.results import VOTE_COLUMNS, live_votes_frame
from db.queries.studies import (
    get_annotator,
    get_pair,
    get_study,
    list_studies,
    rendered_pairs,
    study_by_name,
    study_pairs,
)
from db.queries.variants import variant_by_name, variant_catalogue
from db.queries.votes import Progress, live_vote, progress, record_vote, undo_last_vote

__all__ = [
    "VOTE_COLUMNS",
    "annotator_rows",
    "Progress",
    "get_annotator",
    "get_pair",
    "get_study",
    "list_studies",
    "live_vote",
    "live_votes_frame",
    "progress",
    "record_vote",
    "rendered_pairs",
    "study_by_name",
    "study_pairs",
    "undo_last_vote",
    "variant_by_name",
    "variant_catalogue",
]
