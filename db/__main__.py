"""Database command line (`DATABASE_URL`, else `$ARENA_DATA_DIR/arena.sqlite3`).

python -m db upgrade                                   # create / upgrade the schema
python -m db bootstrap [--base-url URL]                # upgrade; fresh install: print admin link
python -m db create-admin NAME [--base-url http://localhost:8501]   # prints a login link
python -m db backup PATH [--force]                     # consistent copy of a live SQLite DB

Votes are exported by one command, `python -m evaluation export --study NAME --format csv|parquet|
fastchat --out FILE [--force]`; `python -m db export-votes` only points there.
"""

from __future__ import annotations

import argparse
import sys

from sqlalchemy.orm import Session

from db.auth import BOOTSTRAP_NOTICE, create_annotator, ensure_bootstrap_admin, login_link
from db.backup import backup_sqlite
from db.engine import database_url, make_engine, normalize_url, upgrade
from db.errors import DbError

EXPORT_COMMAND = (
    "python -m evaluation export --study NAME --format csv|parquet|fastchat --out FILE [--force]"
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m db", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("upgrade", help="apply the Alembic migrations")
    bootstrap = commands.add_parser(
        "bootstrap", help="upgrade; on a fresh install create an admin and print its login link"
    )
    bootstrap.add_argument("--base-url", default="http://localhost:8501")
    admin = commands.add_parser("create-admin", help="create an admin; prints a login link")
    admin.add_argument("name")
    admin.add_argument("--base-url", default="http://localhost:8501")
    backup = commands.add_parser("backup", help="consistent copy of the SQLite database")
    backup.add_argument("path")
    backup.add_argument("--force", action="store_true", help="overwrite an existing file")
    commands.add_parser(
        "export-votes", help=f"replaced by: {EXPORT_COMMAND}", add_help=False, prefix_chars="\0"
    ).add_argument("rest", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.command == "export-votes":
        print(f"error: votes are exported by one command now: {EXPORT_COMMAND}", file=sys.stderr)
        return 2

    url = database_url()
    try:
        return _run(args, url)
    except DbError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace, url: str) -> int:
    shown_url = normalize_url(url).render_as_string(hide_password=True)
    if args.command == "upgrade":
        upgrade(url)
        print(f"database at head: {shown_url}")
        return 0
    if args.command == "backup":
        dest = backup_sqlite(url, args.path, overwrite=args.force)
        print(f"backup written: {dest}")
        return 0

    upgrade(url)  # idempotent; lets create-admin work on a fresh install
    engine = make_engine(url)
    try:
        with Session(engine) as s, s.begin():
            if args.command == "bootstrap":
                token = ensure_bootstrap_admin(s)
                if token is not None:
                    print(f"\n  {BOOTSTRAP_NOTICE}\n  {login_link(args.base_url, token)}\n")
                else:
                    print("an admin exists; `python -m db create-admin NAME` prints a new link")
                return 0
            if args.command == "create-admin":
                annotator, token = create_annotator(s, args.name, role="admin")
                print(f"admin {annotator.name!r} created. Its login link is shown only this once")
                print("(only a hash of the token is stored); keep it private:")
                print(login_link(args.base_url, token))
                return 0
            raise AssertionError(f"unhandled command {args.command!r}")
    finally:
        engine.dispose()


if __name__ == "__main__":
    raise SystemExit(main())
