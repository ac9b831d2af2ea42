"""Command-line entry points of the evaluation package.

python -m evaluation tally --votes votes.csv --format json
python -m evaluation decide --votes votes.csv --format json
python -m evaluation generate --study demo
python -m evaluation demo
python -m evaluation export --study demo --format csv --out votes.csv
python -m evaluation import-images --variant NAME --manifest FILE.csv [--checkpoint LABEL]
python -m evaluation study apply FILE.toml | study dump --study NAME [--out FILE.toml]
python -m evaluation report --study NAME --out DIR [--force]
"""

import importlib
import sys

COMMANDS = {
    "tally": "evaluation.tally_cli",
    "decide": "evaluation.decide_cli",
    "generate": "evaluation.pregenerate",
    "demo": "evaluation.demo",
    "export": "evaluation.export_cli",
    "import-images": "evaluation.imports",
    "study": "evaluation.study_file",
    "report": "evaluation.report",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        print(__doc__.strip(), file=sys.stderr)
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    module = importlib.import_module(COMMANDS[argv[0]])
    return module.main(argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main())
