#!/usr/bin/env bash
# Creates .venv with the pinned dependencies and the project in editable mode.
# Skips when the venv matches pyproject.toml + constraints.txt (stamp holds their hash).
# The libvirt binding (libvirt-python) is compiled here: its build needs
# pkg-config, the libvirt headers and a C compiler, installed first.
set -euo pipefail
. "$(dirname "$0")/env.sh"
# shellcheck source=tools/packages.sh
. "$(dirname "$0")/packages.sh"
PKG_LOG_PREFIX=python-env
cd "$TENANCY_ROOT"

want=$(cat pyproject.toml $(ls constraints.txt 2>/dev/null) | sha256sum | cut -c1-16)
stamp=.venv/.tenancy-stamp
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && .venv/bin/python -c 'import tenancy, libvirt, pulumi' 2>/dev/null; then
  echo "python-env: up to date ($want)"
  exit 0
fi

ensure_packages "libvirt-python build" pkg-config libvirt-dev gcc libc6-dev
PY="${TENANCY_PYTHON:-$(command -v python3.11 || command -v python3)}"
"$PY" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' 2>/dev/null ||
  { echo "python-env: $PY is not Python 3.11 (set TENANCY_PYTHON)" >&2; exit 1; }
"$PY" -c 'import venv, ensurepip' 2>/dev/null || ensure_packages "python venv" python3-venv
echo "python-env: building .venv with $PY"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip==25.3 setuptools==80.9.0 wheel
cons=()
[ -f constraints.txt ] && cons=(-c constraints.txt)
.venv/bin/python -m pip install -q "${cons[@]}" -e '.[dev]'
echo "$want" > "$stamp"
echo "python-env: ready"
