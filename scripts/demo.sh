#!/usr/bin/env bash
# The demo: a 10,000-recipient campaign through ingest, the number streams, the sender, the
# simulator, the webhook and Postgres, with live progress and a summary; it prints the web
# console's address and a key to sign in with. Exits 0 only when every message reached a final
# status. `scripts/demo.sh --serve` keeps the console running afterwards, until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
cargo run --quiet -p herald -- demo "$@"
