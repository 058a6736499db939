#!/usr/bin/env bash
# The whole test suite: formatting, lints, the Helm chart and the Dockerfile, and every test
# against real Redis and PostgreSQL (started privately when none answer at the configured URLs).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
# The fault tests start and kill Redis instances of their own; the managed-Redis tests start a
# TLS one (certificates made with openssl) and a cluster (formed with redis-cli).
command -v redis-server >/dev/null || herald_install redis-server
command -v openssl >/dev/null || herald_install openssl
# ... and a PostgreSQL of their own (tests/tests/faults.rs restarts it).
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || herald_install postgresql
# The console's browser test drives Debian's Chromium through ChromeDriver (skipped, saying
# so, when they are missing and cannot be installed).
{ [ -x /usr/bin/chromium ] && command -v chromedriver >/dev/null; } ||
  herald_install chromium chromium-driver || herald_log "the console's browser test will be skipped"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
scripts/chart-check.sh
# What each fault did, written by the fault suite and shown once every test has passed.
fault_report="${CARGO_TARGET_DIR:-target}/tmp/fault-report.txt"
rm -f "$fault_report"
cargo test --workspace
if [ -f "$fault_report" ]; then
  echo "Fault suite (tests/tests/faults.rs):"
  cat "$fault_report"
fi
