"""The data layer: every database query, by topic; a `Session` first, never commit (the caller
owns the transaction, as in `with session_factory(engine).begin() as s:`).

Topic modules: `studies` (studies, pairs, life cycle, settings), `votes` (record, undo,
progress), `results` (live votes as the interchange frame, the study's vote fingerprint),
`exclusions` (annotators left out of a study's tallies), `gallery` (the drill-down's pairs and
the image grid), `generation` (a study's images by job status, failed images, seconds per
image), `variants` (variants, checkpoints), `accounts` (annotators as listed), `scheduling`,
`plan`, `report`. The names below are the package's public surface.
"""

from db.queries.accounts import annotator_rows
from db.queries.exclusions import (
    Exclusion,
    exclude,
    excluded_annotator_ids,
    exclusion_history,
    live_exclusions,
    restore,
    study_annotators,
)
from db.queries.gallery import Grid, PairVotes, comparison_pairs, grid_choices, study_grid
from db.queries.generation import (
    FAILED_IMAGE_COLUMNS,
    JobCounts,
    failed_images,
    job_counts,
    seconds_per_image,
    study_image_ids,
)
from db.queries.results import VOTE_COLUMNS, live_votes_frame, votes_fingerprint
from db.queries.studies import (
    STUDY_TRANSITIONS,
    change_study_status,
    get_annotator,
    get_pair,
    get_study,
    list_studies,
    planning_choices,
    rendered_pairs,
    study_by_name,
    study_pairs,
    update_study_settings,
)
from db.queries.variants import variant_by_name, variant_catalogue
from db.queries.votes import Progress, live_vote, progress, record_vote, undo_last_vote

__all__ = [
    "FAILED_IMAGE_COLUMNS",
    "STUDY_TRANSITIONS",
    "VOTE_COLUMNS",
    "annotator_rows",
    "JobCounts",
    "Progress",
    "change_study_status",
    "failed_images",
    "Exclusion",
    "Grid",
    "PairVotes",
    "comparison_pairs",
    "exclude",
    "excluded_annotator_ids",
    "exclusion_history",
    "grid_choices",
    "live_exclusions",
    "restore",
    "study_annotators",
    "study_grid",
    "votes_fingerprint",
    "get_annotator",
    "get_pair",
    "get_study",
    "job_counts",
    "list_studies",
    "live_vote",
    "live_votes_frame",
    "planning_choices",
    "progress",
    "record_vote",
    "rendered_pairs",
    "seconds_per_image",
    "study_by_name",
    "study_image_ids",
    "study_pairs",
    "undo_last_vote",
    "variant_by_name",
    "variant_catalogue",
    "update_study_settings",
]
