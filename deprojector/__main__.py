"""Command line of the deprojector package.

    python -m deprojector info --preset vt-final --hidden-size 768
    python -m deprojector deproject --model DIR --inputs IN.npy --out OUT.npy [--from-projected] [--member K]

`info` prints one JSON object (parameter counts of a preset); `deproject` turns (N, D) float32
embeddings into (N, 77, D) float32 hidden states with a checkpoint folder, on CPU.
"""

from __future__ import annotations

import argparse
import json
import sys

from deprojector.errors import DeprojectorError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deprojector", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="parameter counts of a VT preset, as JSON")
    info.add_argument("--preset", required=True, help="e.g. vt-final, vt-embed-1d, vt-mlp-4d")
    info.add_argument("--hidden-size", type=int, default=768, help="D (default 768, CLIP-L)")
    run = sub.add_parser("deproject", help="pooled embeddings (N, D) -> hidden states (N, 77, D)")
    run.add_argument("--model", required=True, help="checkpoint folder (ours, legacy or author VT)")
    run.add_argument("--inputs", required=True, help=".npy float32 array (N, D)")
    run.add_argument("--out", required=True, help=".npy file to write (N, 77, D) float32")
    run.add_argument(
        "--from-projected", action="store_true", help="inputs are projected text_embeds"
    )
    run.add_argument("--member", type=int, default=None, help="run ensemble member K alone")
    args = parser.parse_args(argv)

    try:
        if args.command == "info":
            from deprojector.model import preset_info

            print(json.dumps(preset_info(args.preset, args.hidden_size)))
        else:
            from deprojector.checkpoint import deproject_file

            out = deproject_file(
                args.model, args.inputs, args.out, args.from_projected, args.member
            )
            print(f"wrote {out}", file=sys.stderr)
    except (DeprojectorError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
