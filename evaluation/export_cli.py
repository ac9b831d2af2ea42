"""Export a study's live votes from the database (the one vote-export command).

    python -m evaluation export --study demo --format csv --out votes.csv
    python -m evaluation export --study demo --format parquet --out votes.parquet
    python -m evaluation export --study demo --format fastchat --out battles.json
    python -m evaluation export --study demo --format csv --out votes.csv --force   # replace it

csv/parquet: the vote interchange format (DESIGN.md); fastchat: FastChat's battle layout
(`model_a, model_b, winner, judge, tstamp`) as a JSON array. Quality-control repeats and the
votes of annotators excluded from the study's tallies are left out (the count is printed).
CSV cells starting with = + - @, a tab or a carriage return are prefixed with ' so a spreadsheet
shows them as text (`python -m evaluation tally` reads them back unchanged); `--raw-csv` keeps
them as they are. The file is written atomically; an existing file is replaced only with
`--force`, and the database and its -wal/-shm/-journal files never.
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
    parser.add_argument("--out", required=True, help="file to write (a new file unless --force)")
    parser.add_argument("--force", action="store_true", help="replace an existing --out file")
    parser.add_argument(
        "--raw-csv",
        action="store_true",
        help="CSV: keep cells starting with = + - @ tab CR as they are (no ' prefix)",
    )
    parser.add_argument("--database-url", default=None, help="default: DATABASE_URL or SQLite")
    args = parser.parse_args(argv)

    from db.backup import check_destination, database_files
    from db.engine import make_engine, session_factory
    from db.errors import DbError, NotFoundError
    from db.queries import live_votes_frame, study_by_name
    from evaluation import export

    engine = make_engine(args.database_url)
    try:
        try:
            out = check_destination(
                args.out, overwrite=args.force, protected=database_files(engine)
            )
        except DbError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        with session_factory(engine)() as s:
            study = study_by_name(s, args.study)
            everyone = live_votes_frame(s, study.id, include_excluded=True)
    except NotFoundError as error:
        print(f"error: --study: {error}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    # Excluded annotators' votes are left out, as in every tally; say how many.
    excluded = int(everyone["excluded"].sum())
    votes = everyone[~everyone["excluded"]].drop(columns="excluded")
    try:
        if args.format == "csv":
            path = export.write_votes_csv(votes, out, overwrite=args.force, raw=args.raw_csv)
        elif args.format == "parquet":
            path = export.write_votes_parquet(votes, out, overwrite=args.force)
        else:
            path = export.write_fastchat_json(votes, out, overwrite=args.force)
    except FileExistsError as error:  # created by someone else since the check
        print(f"error: --out {error}", file=sys.stderr)
        return 2
    print(f"wrote {len(votes)} live votes of study {args.study!r} to {path}")
    if excluded:
        print(f"left out {excluded} votes of excluded annotators (the results page lists them)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
