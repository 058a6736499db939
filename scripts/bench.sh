#!/usr/bin/env bash
# Benchmark programs. Each prints a small table and appends its figures, with the date, the
# commit and the core count, to BENCHMARKS.md. Loopback only; every load is bounded in time.
#
#   scripts/bench.sh sim    the simulator's send endpoint under wrk (S1), and a cap of 80 msg/s
#                           pushed as hard as wrk can (S2); 3 runs each, medians quoted
#   scripts/bench.sh b1     B1 and the lean prototype of the same design (b1-prototype),
#                           alternating run by run, 3 runs each: medians and Herald's share
#   scripts/bench.sh b1-prototype|b1-lat|b2|b2-40|b3
#                           a campaign through ingest and the sender against the simulator in
#                           another process (`herald bench`; b1 and b2-40 against its lean
#                           mode, which only answers and counts), 3 runs, medians quoted; needs
#                           Redis and Postgres (started privately like the tests' when absent);
#                           b2-40 is 40 numbers at 1,000 msg/s each (200,000 messages);
#                           b3 measures the adaptive rate against a cap it is not told
#   scripts/bench.sh sustained
#                           B1 with 1,000,000 messages against B1 with 100,000, alternating run
#                           by run on one build (3 runs each): medians and their ratio
#   scripts/bench.sh b4     a 1,000,000-row CSV (phone + 2 variables, 2% invalid rows, 1%
#                           duplicates) uploaded with curl to `herald ingest` in its own
#                           process: seconds end to end and the process's peak RSS; 3 runs
#   scripts/bench.sh b5     signed webhook POSTs under wrk, and the processors' apply rate
#   scripts/bench.sh statements
#                           the Postgres CPU (and wall time) a row of each hot statement costs,
#                           alone: the recorder's sends, the webhook log, the receipts; and a
#                           call of the campaign view's per-number read; 3 runs
#   scripts/bench.sh export a 1,000,000-message campaign exported as CSV from `herald ingest`:
#                           seconds and the process's RSS growth; 3 runs
#   BENCH_BUSY=N (b1, b1-lat, b2, b2-40 and compare's Herald workloads): N busy loops compete
#   for the cores during each run, as other tenants of a shared host do
#   scripts/bench.sh compare REV b1|b1-lat|b2|b5...
#                           the same workloads on REV (built from a worktree under target/bench)
#                           and on the working tree, alternating the two builds run by run, each
#                           with a database of its own; both sides' rows and medians
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${BENCH_RUNS:-3}
seconds=${BENCH_SECONDS:-10}
work=target/bench
mkdir -p "$work"

need_wrk() {
  command -v wrk >/dev/null && return
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >/dev/null
  else
    echo "bench: wrk is needed: sudo apt-get install -y wrk" >&2
    exit 1
  fi
}

# The commit measured, and whether the tree differed from it (BENCHMARKS.md aside).
commit_label() {
  local label
  label=$(git rev-parse --short HEAD)
  if [ -n "$(git status --porcelain --untracked-files=no -- . ':!BENCHMARKS.md')" ]; then
    label="$label with uncommitted changes"
  fi
  echo "$label"
}

# prepare_release: the services up, the release build current, and the caller's `commit` and
# `cores` (its locals) set for the report.
prepare_release() {
  source scripts/services.sh
  cargo build --release --quiet -p herald
  commit=$(commit_label)
  cores=$(nproc)
}

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

free_port() {
  local port=$((20000 + RANDOM % 10000)) # below the ephemeral range
  while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
  echo "$port"
}

# start_simulator <scenario.json>: runs `herald simulator` in the background on a free port.
start_simulator() {
  sim_port=$(free_port)
  HERALD__SIMULATOR__PORT=$sim_port HERALD__SIMULATOR__WEBHOOK_URL= \
    HERALD__SIMULATOR__SCENARIO="${1:-}" HERALD__TELEMETRY__FILTER=warn \
    target/release/herald simulator &
  sim_pid=$!
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$sim_port") 2>/dev/null && return
    sleep 0.05
  done
  echo "bench: the simulator did not start" >&2
  exit 1
}

# scenario_of <workload>: the simulator's scenario file for a Herald workload. B1 and its
# variant B2-40 run against its lean mode (each send answered at once with a wamid, nothing
# validated or scheduled, only each number's sends and busiest second counted), as
# ../shared/benchmarks.md has them, so that the machine's CPU goes to Herald and its cost can
# be read; B2 (the simulator enforcing a cap) and the rest against the full simulator.
scenario_of() {
  if [ "$1" = b1 ] || [ "$1" = b1-prototype ] || [ "$1" = b2-40 ]; then
    echo '{"lean": true}' >"$work/lean.json"
    echo "$PWD/$work/lean.json"
  fi
}

# stand_in_note <workload>: how the report names the simulator a workload ran against.
stand_in_note() {
  if [ -n "$(scenario_of "$1")" ]; then
    local note="its lean mode: it answers, counts each number's busiest second and enforces no"
    note+=" cap, so a second over the rate shows in that column and no 130429 can be answered"
    printf ' (%s)' "$note"
  fi
}

stop_simulator() { kill "$sim_pid" 2>/dev/null; wait "$sim_pid" 2>/dev/null || true; }

# BENCH_BUSY=N: N busy loops for the length of a run (`start_busy` … `stop_busy`), and the
# sentence a report says it with.
busy_pids=()
start_busy() {
  for _ in $(seq 1 "${BENCH_BUSY:-0}"); do
    # Bounded, should the bench stop on an error before `stop_busy`.
    timeout 1200 bash -c 'while :; do :; done' &
    busy_pids+=($!)
  done
}
stop_busy() {
  [ ${#busy_pids[@]} -gt 0 ] || return 0
  kill "${busy_pids[@]}" 2>/dev/null
  wait "${busy_pids[@]}" 2>/dev/null || true
  busy_pids=()
}
busy_note() {
  [ "${BENCH_BUSY:-0}" -gt 0 ] || return 0
  echo "During each run $BENCH_BUSY busy loops (\`BENCH_BUSY=$BENCH_BUSY\`) competed for the cores."
}

write_lua() {
  cat >"$work/send.lua" <<'LUA'
-- One template send per request, each to a new recipient.
local counter = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer bench-token"
request = function()
  counter = counter + 1
  local body = '{"messaging_product":"whatsapp","recipient_type":"individual","to":"+4474'
    .. string.format("%08d", counter % 100000000)
    .. '","type":"template","biz_opaque_callback_data":"' .. counter
    .. '","template":{"name":"spring_sale_2026","language":{"code":"en_GB"},'
    .. '"components":[{"type":"body","parameters":[{"type":"text","text":"Customer"},{"type":"text","text":"25%"}]}]}}'
  return wrk.format(nil, "/v24.0/100000000001/messages", nil, body)
end
LUA
}

bench_sim() {
  need_wrk
  cargo build --release --quiet -p herald
  write_lua
  local commit cores wrk_cmd
  commit=$(commit_label)
  cores=$(nproc)
  wrk_cmd="wrk -t2 -c64 -d${seconds}s --latency -s $work/send.lua"

  echo '{"pair_limit": false}' >"$work/open.json"
  local rates=() p99s=() table=""
  for run in $(seq 1 "$runs"); do
    start_simulator "$PWD/$work/open.json"
    out=$($wrk_cmd "http://127.0.0.1:$sim_port")
    stop_simulator
    rate=$(awk '/Requests\/sec/ { print $2 }' <<<"$out")
    p99=$(awk '$1 == "99%" { print $2 }' <<<"$out")
    errors=$(awk '/Non-2xx/ { print $5 }' <<<"$out")
    rates+=("$rate"); p99s+=("$p99")
    table+="| $run | $rate | $p99 | ${errors:-0} |"$'\n'
  done
  local median_rate
  median_rate=$(printf '%s\n' "${rates[@]}" | median)

  echo '{"cap_per_number": 80, "pair_limit": false}' >"$work/cap80.json"
  local maxes=() cap_table=""
  for run in $(seq 1 "$runs"); do
    start_simulator "$PWD/$work/cap80.json"
    out=$($wrk_cmd "http://127.0.0.1:$sim_port")
    stats=$(curl -s "http://127.0.0.1:$sim_port/sim/stats")
    stop_simulator
    read -r accepted max throttled < <(python3 -c '
import json, sys
s = json.load(sys.stdin)
print(s["accepted_total"], max(s["max_per_second"].values()), s["rejected"].get("130429", 0))' <<<"$stats")
    rate=$(awk '/Requests\/sec/ { print $2 }' <<<"$out")
    maxes+=("$max")
    cap_table+="| $run | $rate | $accepted | $max | $throttled |"$'\n'
  done
  local worst
  worst=$(printf '%s\n' "${maxes[@]}" | sort -g | tail -n 1)

  local report
  report=$(cat <<MD

## Simulator send endpoint — $(date -u +%Y-%m-%d), commit $commit, $cores cores

S1: \`$wrk_cmd\` against \`herald simulator\` (release build, no cap, no pair limit, no
webhooks, a new recipient per request), $runs runs. wrk and the simulator share the machine.

| run | requests/s | p99 | non-2xx |
| --- | --- | --- | --- |
$table
**Median: $median_rate requests/s** (target ≥ 40,000).

S2: the same load against a cap of 80 msg/s on the one number, $seconds s per run: the most
messages the simulator accepted in any one-second window.

| run | requests/s | accepted | max in any 1 s window | answered 130429 |
| --- | --- | --- | --- | --- |
$cap_table
**Highest one-second window over all runs: $worst** (cap 80).
MD
)
  echo "$report"
  [ -f BENCHMARKS.md ] || printf '# Herald benchmarks\n\nFigures appended by `scripts/bench.sh`; each section names its workload and command.\n' >BENCHMARKS.md
  echo "$report" >>BENCHMARKS.md
}

bench_herald() {
  local workload=$1 commit cores
  prepare_release
  local rows="" results=()
  for run in $(seq 1 "$runs"); do
    start_simulator "$(scenario_of "$workload")"
    start_busy
    out=$(target/release/herald bench "$workload" --simulator "http://127.0.0.1:$sim_port")
    stop_busy
    stop_simulator
    results+=("$out")
    rows+=$(scripts/bench-figures.py row "$run" "$out")$'\n'
  done
  local medians
  medians=$(printf '%s\n' "${results[@]}" | scripts/bench-figures.py median)
  local report
  report=$(cat <<MD

## $workload — $(date -u +%Y-%m-%d), commit $commit, $cores cores

\`scripts/bench.sh $workload\`: \`herald bench $workload\` (ingest and sender in one release
process) against \`herald simulator\` in another$(stand_in_note "$workload"), from the start
call until every message is \`sent\` in Postgres; $runs runs. CPU per 1,000 messages:
Herald's process, and the whole machine (Redis, Postgres, the simulator, and whatever else
the shared machine runs).
$(busy_note)

| run | msg/s | Herald CPU s/1k | all CPU s/1k | peak RSS MB | max msgs in a 1 s window (one number) | 130429 | sent twice | most sends in flight |
| --- | --- | --- | --- | --- | --- | --- | --- | --- |
$rows
**Median: $medians.**
MD
)
  echo "$report"
  [ -f BENCHMARKS.md ] || printf '# Herald benchmarks\n' >BENCHMARKS.md
  echo "$report" >>BENCHMARKS.md
}

bench_adaptation() {
  local commit cores
  prepare_release
  local rows="" results=()
  for run in $(seq 1 "$runs"); do
    start_simulator ""
    out=$(target/release/herald bench b3 --simulator "http://127.0.0.1:$sim_port")
    stop_simulator
    results+=("$out")
    rows+=$(scripts/bench-figures.py b3-row "$run" "$out")$'\n'
  done
  local medians
  medians=$(printf '%s\n' "${results[@]}" | scripts/bench-figures.py b3-median)
  local report
  report=$(cat <<MD

## b3 — $(date -u +%Y-%m-%d), commit $commit, $cores cores

\`scripts/bench.sh b3\`: \`herald bench b3\` (ingest and sender in one release process) against
\`herald simulator\` in another: one number, a simulator cap of 250 msg/s that Herald is not
told, a start at 80 msg/s, a 4 s pacing window (\`sender.pacing.window_s\`; the default 300 s
cannot climb from 80 to 250 within a minute), the cap lowered to 150 after 75 s, 95 s per run;
$runs runs. Rates come from the simulator's counters sampled every 250 ms.

| run | s to 90% of 250 | msg/s after | 130429 share after | s back under 150 |
| --- | --- | --- | --- | --- |
$rows
**Median: $medians.**
MD
)
  echo "$report"
  echo "$report" >>BENCHMARKS.md
}

# runs_alone WORKLOAD ROWS MEDIAN: `herald bench WORKLOAD`, which needs no simulator, $runs
# times; sets the caller's rows and medians (bench-figures.py's ROWS and MEDIAN formats).
runs_alone() {
  local workload=$1 rows_format=$2 median_format=$3 results=() run out
  rows=""
  for run in $(seq 1 "$runs"); do
    out=$(HERALD__TELEMETRY__FILTER=error target/release/herald bench "$workload" --simulator none)
    results+=("$out")
    rows+=$(scripts/bench-figures.py "$rows_format" "$run" "$out")$'\n'
  done
  medians=$(printf '%s\n' "${results[@]}" | scripts/bench-figures.py "$median_format")
}

bench_webhook() {
  local commit cores
  need_wrk
  prepare_release
  local rows medians
  runs_alone b5 b5-rows b5-median
  local report
  report=$(cat <<MD

## b5 — $(date -u +%Y-%m-%d), commit $commit, $cores cores

\`scripts/bench.sh b5\`: \`herald bench b5\` runs the webhook role (receiver and its
processors) in one release process and \`wrk -t2 -c64 -d5s --latency\` POSTs signed bodies of 1
and of 100 \`delivered\` statuses for 100,000 sent messages at it; the processors' rate counts
every status accepted, from the first POST until the buffer is empty (each body is also kept
in \`webhook_events\`). wrk, Redis and Postgres share the machine; $runs runs.

| run | statuses per POST | requests/s | statuses/s accepted | p99 | statuses/s applied |
| --- | --- | --- | --- | --- | --- |
$rows
**Median: $medians.**
MD
)
  echo "$report"
  echo "$report" >>BENCHMARKS.md
}

bench_statements() {
  local commit cores
  prepare_release
  local rows medians
  runs_alone statements statements-rows statements-median
  local report
  report=$(cat <<MD

## statements — $(date -u +%Y-%m-%d), commit $commit, $cores cores

\`scripts/bench.sh statements\`: \`herald bench statements\` runs each hot Postgres statement
alone over a campaign's 100,000 messages, one transaction a batch, on one connection: the
recorder's transaction for sends Meta accepted (\`RECORD_SENT\` and the counters), the webhook
log's insert of one-status bodies, and the receipts' transaction for their \`delivered\`
statuses (\`APPLY\` and the counters); then the campaign view's read of each number's share
(for these a "row" is a call, over the campaign's 100,000 messages): \`view_by_number\` reads
the lanes' kept counts (500 calls), \`view_by_number_group_by\` the \`GROUP BY\` over the
messages it read before them (20 calls). Postgres CPU is that connection's server process's
(from /proc); $runs runs.

| run | statement | batch | Postgres CPU µs a row | wall µs a row |
| --- | --- | --- | --- | --- |
$rows
**Median: $medians.**
MD
)
  echo "$report"
  echo "$report" >>BENCHMARKS.md
}

# The database URL with another database name.
database_url_named() {
  local url=${HERALD__DATABASE__URL:-$(herald_config_value database url)}
  local query=""
  [[ $url == *"?"* ]] && query="?${url#*\?}"
  local base=${url%%\?*}
  echo "${base%/*}/$1$query"
}

bench_compare() {
  local rev=$1 root=$PWD
  shift
  need_wrk
  source scripts/services.sh
  local before after
  before=$(git rev-parse --short "$rev")
  after=$(commit_label)
  local tree="$work/tree-$before"
  [ -d "$tree" ] || git worktree add -q --detach "$tree" "$rev"
  # One target directory, so that the dependencies are built once for both. Cargo names the
  # two trees' own crates alike and judges them fresh by their files' times, so each build
  # first cleans Herald's crates.
  # BENCH_REUSE=1 keeps the two binaries of the last comparison (same REV, same tree).
  local crates=(-p herald-shared -p herald-ingest -p herald-sender -p herald-webhook
    -p herald-simulator -p herald)
  if [ -z "${BENCH_REUSE:-}" ] || [ ! -x "$work/herald-$before" ] || [ ! -x "$work/herald-after" ]; then
    (cd "$tree" && export CARGO_TARGET_DIR="$root/target" &&
      cargo clean --release --quiet "${crates[@]}" && cargo build --release --quiet -p herald)
    cp target/release/herald "$work/herald-$before"
    cargo clean --release --quiet "${crates[@]}"
    cargo build --release --quiet -p herald
    cp target/release/herald "$work/herald-after"
    echo "$after" >"$work/herald-after.commit"
  fi
  after=$(cat "$work/herald-after.commit")
  if cmp -s "$work/herald-$before" "$work/herald-after"; then
    echo "bench: the two builds are the same binary" >&2
    exit 1
  fi
  local cores
  cores=$(nproc)
  for workload in "$@"; do
    local rows="" before_runs=() after_runs=() formatter=row median_of=median
    if [ "$workload" = b5 ]; then formatter=b5-rows median_of=b5-median; fi
    for run in $(seq 1 "$runs"); do
      for side in before after; do
        local bin="$work/herald-after" label=$after
        [ $side = before ] && bin="$work/herald-$before" label=$before
        local db
        db=$(database_url_named "herald_bench_$side")
        if [ "$workload" = b5 ]; then
          out=$(HERALD__DATABASE__URL=$db HERALD__TELEMETRY__FILTER=error "$bin" bench b5 --simulator none)
        else
          start_simulator "$(scenario_of "$workload")"
          start_busy
          out=$(HERALD__DATABASE__URL=$db "$bin" bench "$workload" --simulator "http://127.0.0.1:$sim_port")
          stop_busy
          stop_simulator
        fi
        if [ $side = before ]; then before_runs+=("$out"); else after_runs+=("$out"); fi
        rows+=$(scripts/bench-figures.py "$formatter" "$run ($label)" "$out")$'\n'
      done
    done
    local before_median after_median
    before_median=$(printf '%s\n' "${before_runs[@]}" | scripts/bench-figures.py "$median_of")
    after_median=$(printf '%s\n' "${after_runs[@]}" | scripts/bench-figures.py "$median_of")
    local header="| run | msg/s | Herald CPU s/1k | all CPU s/1k | peak RSS MB | max msgs in a 1 s window (one number) | 130429 | sent twice | most sends in flight |
| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    if [ "$workload" = b5 ]; then
      header="| run | statuses per POST | requests/s | statuses/s accepted | p99 | statuses/s applied |
| --- | --- | --- | --- | --- | --- |"
    fi
    local report
    report=$(cat <<MD

## $workload, before and after — $(date -u +%Y-%m-%d), $before against $after, $cores cores

\`scripts/bench.sh compare $before $workload\`: the two release builds alternate run by run
(before, after, before, …), each with a database of its own, against the same simulator
build; $runs runs each.
$(busy_note)

$header
$rows
**Median before ($before): $before_median.**
**Median after ($after): $after_median.**
MD
)
    echo "$report"
    echo "$report" >>BENCHMARKS.md
  done
}

# ingest_with_campaign <name> <run> <bin>: a fresh database herald_bench_<name>_<run>, a tenant,
# the simulator and `herald ingest` in the background, a number and a draft campaign. Sets the
# caller's locals db, api, auth, number, campaign and ingest_pid.
ingest_with_campaign() {
  local name=$1 run=$2 bin=$3
  db=$(database_url_named "herald_bench_${name}_$run")
  export HERALD__DATABASE__URL=$db HERALD__TELEMETRY__FILTER=warn
  command -v psql >/dev/null && psql -q "$(database_url_named postgres)" \
    -c "DROP DATABASE IF EXISTS herald_bench_${name}_$run" 2>/dev/null || true
  "$bin" migrate >/dev/null
  local key port
  key=$("$bin" tenant create --name "$name" | awk '/^api key/ { print $3 }')
  start_simulator ""
  port=$(free_port)
  HERALD__INGEST__PORT=$port HERALD__WHATSAPP__BASE_URL="http://127.0.0.1:$sim_port" "$bin" ingest &
  ingest_pid=$!
  herald_wait_for "ingest" herald_reachable 127.0.0.1 "$port"
  api="http://127.0.0.1:$port" auth="Authorization: Bearer $key"
  number=$(curl -sf -H "$auth" -H 'Content-Type: application/json' \
    -d "{\"phone_number_id\": \"400000000001\", \"waba_id\": \"$name\", \"access_token\": \"t\"}" \
    "$api/v1/numbers" | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
  campaign=$(curl -sf -H "$auth" -H 'Content-Type: application/json' \
    -d "{\"name\": \"$name\", \"template\": {\"name\": \"spring_sale_2026\", \"language\": \"en_GB\"}, \"sender_numbers\": [\"$number\"]}" \
    "$api/v1/campaigns" | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
}

bench_export() {
  source scripts/services.sh
  command -v psql >/dev/null || { echo "bench: psql is needed (postgresql-client)" >&2; exit 1; }
  cargo build --release --quiet -p herald
  local commit cores rows=${BENCH_ROWS:-1000000}
  commit=$(commit_label)
  cores=$(nproc)
  local bin=target/release/herald table="" seconds_all=() growth_all=()
  for run in $(seq 1 "$runs"); do
    local db api auth number campaign ingest_pid
    ingest_with_campaign export "$run" "$bin"
    # A finished campaign's messages, written straight into Postgres: every one read, with
    # its wamid; every 20th failed with a code.
    psql -q "$db" <<SQL
INSERT INTO messages (campaign_id, sender_number_id, recipient, variables, status, attempts,
                      error_code, error_title, queued_at, sent_at, delivered_at, read_at, failed_at)
SELECT '$campaign', '$number', '+4474' || lpad(i::text, 8, '0'), '{"body.1": "Customer"}',
       CASE WHEN i % 20 = 0 THEN 'failed' ELSE 'read' END::message_status, 1,
       CASE WHEN i % 20 = 0 THEN 131026 END, CASE WHEN i % 20 = 0 THEN 'Message undeliverable' END,
       now(), now(), CASE WHEN i % 20 <> 0 THEN now() END, CASE WHEN i % 20 <> 0 THEN now() END,
       CASE WHEN i % 20 = 0 THEN now() END
FROM generate_series(1, $rows) i;
INSERT INTO message_wamids (wa_message_id, message_id)
SELECT 'wamid.HBgL' || id, id FROM messages WHERE campaign_id = '$campaign';
VACUUM ANALYZE messages;
VACUUM ANALYZE message_wamids;
SQL
    local before
    before=$(awk '/VmRSS/ { print $2 }' "/proc/$ingest_pid/status")
    local seconds
    seconds=$(curl -sf -o "$work/export.csv" -w '%{time_total}' -H "$auth" \
      "$api/v1/campaigns/$campaign/messages.csv")
    local peak lines
    peak=$(awk '/VmHWM/ { print $2 }' "/proc/$ingest_pid/status")
    lines=$(wc -l <"$work/export.csv")
    rm -f "$work/export.csv"
    kill "$ingest_pid"; wait "$ingest_pid" 2>/dev/null || true
    stop_simulator
    psql -q "$(database_url_named postgres)" -c "DROP DATABASE IF EXISTS herald_bench_export_$run" 2>/dev/null
    if [ "$lines" -ne $((rows + 1)) ]; then
      echo "bench: the export had $lines lines, not $((rows + 1))" >&2
      exit 1
    fi
    local growth rate
    growth=$(awk -v a="$peak" -v b="$before" 'BEGIN { printf "%.1f", (a - b) / 1024 }')
    rate=$(awk -v n="$rows" -v s="$seconds" 'BEGIN { printf "%.0f", n / s }')
    seconds_all+=("$seconds"); growth_all+=("$growth")
    table+="| $run | $seconds | $rate | $((before / 1024)) | $growth |"$'\n'
  done
  unset HERALD__DATABASE__URL HERALD__TELEMETRY__FILTER
  local median_s median_growth
  median_s=$(printf '%s\n' "${seconds_all[@]}" | median)
  median_growth=$(printf '%s\n' "${growth_all[@]}" | median)
  local report
  report=$(cat <<MD

## export — $(date -u +%Y-%m-%d), commit $commit, $cores cores

\`scripts/bench.sh export\`: \`GET /v1/campaigns/{id}/messages.csv\` of a campaign of $rows
messages (written into Postgres beforehand: 95% read, 5% failed with a code, each with a wamid)
from \`herald ingest\` (release, its own process, a fresh database per run), downloaded by curl
to a file; seconds from the request to the last byte; RSS growth is the ingest process's
\`VmHWM\` after the export less its \`VmRSS\` before. Every export is checked to hold every
message. Postgres and curl share the machine. $runs runs.

| run | seconds | rows/s | ingest RSS before MB | RSS growth MB |
| --- | --- | --- | --- | --- |
$table
**Median: $median_s s, RSS growth $median_growth MB** (targets: ≤ 10 s, ≤ 50 MB).
MD
)
  echo "$report"
  echo "$report" >>BENCHMARKS.md
}

bench_upload() {
  source scripts/services.sh
  cargo build --release --quiet -p herald
  local commit cores rows=${BENCH_ROWS:-1000000} csv="$work/b4.csv"
  commit=$(commit_label)
  cores=$(nproc)
  # Every 50th row is not a phone number, every 100th repeats the row before it.
  awk -v n="$rows" 'BEGIN {
    print "phone,body.1,body.2"
    for (i = 0; i < n; i++) {
      if (i % 50 == 49) phone = "not-a-phone-" i
      else if (i % 100 == 1) phone = sprintf("+4474%08d", i - 1)
      else phone = sprintf("+4474%08d", i)
      printf "%s,Customer %d,%d%%\n", phone, i, i % 60
    }
  }' >"$csv"
  local bin=target/release/herald table="" seconds_all=() rss_all=()
  for run in $(seq 1 "$runs"); do
    local db api auth number campaign ingest_pid
    ingest_with_campaign b4 "$run" "$bin"
    local out
    out=$(curl -sf -w '\n%{time_total}' -H "$auth" -H 'Content-Type: text/csv' \
      --data-binary @"$csv" "$api/v1/campaigns/$campaign/recipients")
    local peak
    peak=$(awk '/VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$ingest_pid/status")
    kill "$ingest_pid"; wait "$ingest_pid" 2>/dev/null || true
    stop_simulator
    local seconds report
    seconds=$(tail -n 1 <<<"$out")
    report=$(head -n 1 <<<"$out")
    read -r accepted duplicates rejected < <(python3 -c '
import json, sys
r = json.load(sys.stdin)
print(r["accepted"], r["duplicates"], r["rejected_count"])' <<<"$report")
    seconds_all+=("$seconds"); rss_all+=("$peak")
    local rate
    rate=$(awk -v n="$rows" -v s="$seconds" 'BEGIN { printf "%.0f", n / s }')
    table+="| $run | $seconds | $rate | $peak | $accepted | $duplicates | $rejected |"$'\n'
  done
  unset HERALD__DATABASE__URL HERALD__TELEMETRY__FILTER
  local median_s median_rss
  median_s=$(printf '%s\n' "${seconds_all[@]}" | median)
  median_rss=$(printf '%s\n' "${rss_all[@]}" | median)
  local size
  size=$(du -m "$csv" | cut -f1)
  local report
  report=$(cat <<MD

## b4 — $(date -u +%Y-%m-%d), commit $commit, $cores cores

\`scripts/bench.sh b4\`: a $rows-row CSV ($size MB: phone + 2 variables, 2% invalid
phones, 1% duplicates) POSTed by \`curl --data-binary\` as \`text/csv\` to \`herald ingest\`
(release, its own process, a fresh database per run), from the request to the report;
peak RSS is the ingest process's \`VmHWM\`. Postgres, the simulator and curl share the
machine. $runs runs.

| run | seconds | rows/s | ingest peak RSS MB | accepted | duplicates | rejected |
| --- | --- | --- | --- | --- | --- | --- |
$table
**Median: $median_s s end to end, peak RSS $median_rss MB** (targets: ≤ 15 s, ≤ 200 MB).
MD
)
  echo "$report"
  echo "$report" >>BENCHMARKS.md
}

# alternate "A" "B": `herald bench A`, then `herald bench B` (each a workload and its
# arguments), $runs times, each against a lean simulator of its own. Sets the caller's rows
# (table rows labelled with each one's last word) and first_median and second_median.
alternate() {
  local a=$1 b=$2 first=() second=() run args out
  rows=""
  for run in $(seq 1 "$runs"); do
    for args in "$a" "$b"; do
      start_simulator "$(scenario_of "${args%% *}")"
      # shellcheck disable=SC2086 # a workload and its arguments, as words
      out=$(target/release/herald bench $args --simulator "http://127.0.0.1:$sim_port")
      stop_simulator
      if [ "$args" = "$a" ]; then first+=("$out"); else second+=("$out"); fi
      rows+=$(scripts/bench-figures.py row "$run (${args##* })" "$out")$'\n'
    done
  done
  first_median=$(printf '%s\n' "${first[@]}" | scripts/bench-figures.py median)
  second_median=$(printf '%s\n' "${second[@]}" | scripts/bench-figures.py median)
}

# B1 is read against a lean prototype of the same design on the same machine
# (../shared/benchmarks.md): the two alternate run by run, against the lean simulator; both
# tables, their medians and Herald's share of the prototype's rate.
bench_b1() {
  local commit cores
  prepare_release
  local rows first_median second_median
  alternate "b1-prototype" "b1"
  local share
  share=$(awk -v a="${second_median%% msg/s*}" -v b="${first_median%% msg/s*}" 'BEGIN { printf "%.2f", a / b }')
  local report
  report=$(cat <<MD

## b1 against the lean prototype — $(date -u +%Y-%m-%d), commit $commit, $cores cores

\`scripts/bench.sh b1\`: \`herald bench b1\` (ingest and sender in one release process: 100,000
messages over 4 uncapped numbers, from the start call until every message is \`sent\` in
Postgres) and \`herald bench b1-prototype\` (the same messages through a lean prototype of the
design: per number one task, \`XREADGROUP\` 256 at a time, hyper POSTs with 64 in flight, one
\`UPDATE … FROM UNNEST\` per 500 answers or 5 ms, \`XACK\`; rows and stream entries made before
its clock starts), alternating run by run against the lean simulator in another process, each
on a database of its own; $runs runs each. "Herald CPU" is the measured process's own.

| run | msg/s | Herald CPU s/1k | all CPU s/1k | peak RSS MB | max msgs in a 1 s window (one number) | 130429 | sent twice | most sends in flight |
| --- | --- | --- | --- | --- | --- | --- | --- | --- |
$rows
**Median, prototype: $first_median.**
**Median, Herald: $second_median: $share of the prototype's rate.**
MD
)
  echo "$report"
  echo "$report" >>BENCHMARKS.md
}

# #16's fifth point: B1 at 1,000,000 messages (autovacuum and all) against B1 at 100,000, the
# two alternating run by run on one build; both tables, their medians and the ratio.
bench_sustained() {
  local commit cores
  prepare_release
  # The figure means something only with autovacuum at work (some machines turn it off). Each
  # run's database is its own and dropped after it, so how often it vacuumed is not kept.
  local autovacuum
  autovacuum=$(psql "$(database_url_named postgres)" -Atc 'SHOW autovacuum' 2>/dev/null || echo unknown)
  local rows first_median second_median
  alternate "b1 --recipients 100000" "b1 --recipients 1000000"
  local ratio
  ratio=$(awk -v a="${second_median%% msg/s*}" -v b="${first_median%% msg/s*}" 'BEGIN { printf "%.0f", 100 * a / b }')
  local report
  report=$(cat <<MD

## b1 sustained (1,000,000 messages) — $(date -u +%Y-%m-%d), commit $commit, $cores cores

\`scripts/bench.sh sustained\`: \`herald bench b1\` with 100,000 and with 1,000,000 recipients,
alternating run by run, against the lean simulator; $runs runs each, each on a database of its
own. Postgres's autovacuum: $autovacuum.

| run | msg/s | Herald CPU s/1k | all CPU s/1k | peak RSS MB | max msgs in a 1 s window (one number) | 130429 | sent twice | most sends in flight |
| --- | --- | --- | --- | --- | --- | --- | --- | --- |
$rows
**Median, 100,000: $first_median.**
**Median, 1,000,000: $second_median: $ratio% of the 100,000-message rate.**
MD
)
  echo "$report"
  echo "$report" >>BENCHMARKS.md
}

case "${1:-}" in
  sim) bench_sim ;;
  b4) bench_upload ;;
  export) bench_export ;;
  b5) bench_webhook ;;
  statements) bench_statements ;;
  b1) bench_b1 ;;
  b1-prototype | b1-lat | b2 | b2-40) bench_herald "$1" ;;
  b3) bench_adaptation ;;
  sustained) bench_sustained ;;
  compare) shift; bench_compare "$@" ;;
  *) echo "usage: scripts/bench.sh sim|b1|b1-prototype|b1-lat|b2|b2-40|b3|b4|b5|statements|sustained|export|compare REV WORKLOAD..." >&2; exit 2 ;;
esac
