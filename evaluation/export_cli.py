"""Export a study's live votes from the database.

    python -m evaluation export --study demo --format csv --out votes.csv
    python -m evaluation export --study demo --format parquet --out votes.parquet
    python -m evaluation export --study demo --format fastchat --out battles.json

csv/parquet: the vote interchange format (DESIGN.md); fastchat: FastChat's battle layout
(`model_a, model_b, winner, judge, tstamp`) as a JSON array. Quality-control repeats are left out.
"""

from __future__ import annotations

import argparse
import sys

FORMATS = ("csv", "parquet", "fastchat")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m evaluation export", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--study", required=True, help="study name")
    parser.add_argument("--format", choices=FORMATS, required=True)
    parser.add_argument("--out", required=True, help="file to write (replaced atomically)")
    parser.add_argument("--database-url", default=None, help="default: DATABASE_URL or SQLite")
    args = parser.parse_args(argv)

    from db.engine import make_engine, session_factory
    from db.errors import NotFoundError
    from db.queries import live_votes_frame, study_by_name
    from evaluation import export

    engine = make_engine(args.database_url)
    try:
        with session_factory(engine)() as s:
            study = study_by_name(s, args.study)
            votes = live_votes_frame(s, study.id)
    except NotFoundError as error:
        print(f"error: --study: {error}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    write = {
        "csv": export.write_votes_csv,
        "parquet": export.write_votes_parquet,
        "fastchat": export.write_fastchat_json,
    }[args.format]
    path = write(votes, args.out)
    print(f"wrote {len(votes)} live votes of study {args.study!r} to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
