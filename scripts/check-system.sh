#!/usr/bin/env bash
# System packages the whole test suite needs (`make test` runs this first):
#   chromium        the browser tests (Playwright drives /usr/bin/chromium)
#   fonts-noto-cjk  CJK glyphs (組数 / 点数) in the screenshots
#   postgresql      the throwaway PostgreSQL server of the database tests
# As root with apt-get, installs what is missing; otherwise prints ONE line naming the exact
# `apt-get install` command and exits 1, before any test runs.
# Probed paths can be overridden (for tests): CHROMIUM_BIN, CJK_FONT_DIR, PG_BIN_GLOB.
set -euo pipefail
CHROMIUM_BIN=${CHROMIUM_BIN:-/usr/bin/chromium}
CJK_FONT_DIR=${CJK_FONT_DIR:-/usr/share/fonts/opentype/noto}
PG_BIN_GLOB=${PG_BIN_GLOB:-/usr/lib/postgresql/*/bin}

missing() {
  local need=()
  [ -x "$CHROMIUM_BIN" ] || need+=(chromium)
  [ -d "$CJK_FONT_DIR" ] || need+=(fonts-noto-cjk)
  local found=no bin
  for bin in $PG_BIN_GLOB; do [ -x "$bin/initdb" ] && found=yes; done
  [ "$found" = yes ] || need+=(postgresql)
  echo "${need[@]+"${need[@]}"}"
}

need=$(missing)
[ -z "$need" ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "make test: installing system packages: $need" >&2
  log=$(mktemp)
  # shellcheck disable=SC2086  # one word per package
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need; } >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    echo "make test: 'apt-get install -y $need' failed (output above)" >&2
    rm -f "$log"
    exit 1
  fi
  rm -f "$log"
  still=$(missing)
  if [ -n "$still" ]; then
    echo "make test: 'apt-get install -y $need' ran but $still is still missing (expected $CHROMIUM_BIN, $CJK_FONT_DIR, $PG_BIN_GLOB/initdb)" >&2
    exit 1
  fi
  exit 0
fi

echo "make test needs system packages that are missing ($need): run 'sudo apt-get install -y $need' and try again" >&2
exit 1
