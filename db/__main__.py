"""Database command line.

python -m db upgrade                 # create / upgrade the schema (Alembic, to head)
"""

from __future__ import annotations

import argparse

from db.engine import database_url, normalize_url, upgrade


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m db", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("upgrade", help="apply the Alembic migrations (DATABASE_URL or data dir)")
    args = parser.parse_args(argv)

    if args.command == "upgrade":
        url = database_url()
        upgrade(url)
        print(f"database at head: {normalize_url(url).render_as_string(hide_password=True)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
