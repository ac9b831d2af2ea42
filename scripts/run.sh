#!/usr/bin/env bash
# `make run`: migrate, print the one-time admin link on a fresh install, start the app.
# The port is PORT when set, else 8501 or the next free one; the same port goes to Streamlit and
# into the printed link.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
if [ -z "${PORT:-}" ]; then
  PORT=$("$PY" -c '
import socket
for port in range(8501, 8601):
    with socket.socket() as s:
        try:
            s.bind(("", port))  # where Streamlit listens (all interfaces)
        except OSError:
            continue
        print(port)
        break
else:
    raise SystemExit("make run: ports 8501-8600 are all in use; set PORT=N")
')
fi
"$PY" -m db bootstrap --base-url "http://localhost:$PORT"
# arena_ui.serve checks ARENA_MAX_UPLOAD_MB and gives Streamlit the same upload limit
exec "$PY" -m arena_ui.serve --server.headless true --server.port "$PORT"
