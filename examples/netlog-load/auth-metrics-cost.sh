#!/usr/bin/env bash
# Measures what authentication and metrics cost on the publish path: two
# brokers from the same binary, side by side on 127.0.0.1, run alternately by
# `netlog-load --compare` (see compare.rs).
#   A (off): no [auth], never scraped.
#   B (on):  ten [[auth.tokens]] (the load tool's last, so every request
#            hashes the secret, compares all ten hashes and matches a glob),
#            and /_metrics scraped every second during B's runs.
# Two passes: the broker started first runs measurably faster on this VM
# (an A/A run of two identical brokers shows about 5% either way, following
# start order), so pass 1 starts "off" first and pass 2 starts "on" first, and
# the summary gives the mean of the two passes' changes, in which that bias
# cancels.
# Usage: examples/netlog-load/auth-metrics-cost.sh [ROUNDS] [SECONDS]
# Builds the release binaries first. Talks to 127.0.0.1 only, stops by
# itself, leaves nothing running; data goes to a temporary directory that is
# removed at the end. Needs curl and jq.
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}
seconds=${2:-6}
cargo build --release --bin netlog --example netlog-load >&2
bin=${CARGO_TARGET_DIR:-target}/release
work=$(mktemp -d)
pids=()
stop_brokers() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
}
trap 'stop_brokers; rm -rf "$work"' EXIT

secret=$("$bin/netlog" token new | sed -n 's/^secret: //p')
hash=$(printf '%s' "$secret" | "$bin/netlog" token hash)
auth_tables() {
  for i in $(seq 1 9); do
    other=$("$bin/netlog" token new | sed -n 's/^sha256: //p')
    printf '\n[[auth.tokens]]\nname = "other-%s"\nsha256 = "%s"\nproduce = ["other-%s"]\n' "$i" "$other" "$i"
  done
  printf '\n[[auth.tokens]]\nname = "load"\nsha256 = "%s"\n' "$hash"
  printf 'produce = ["other", "load-*"]\nconsume = ["load-*"]\nadmin = true\n'
}
tables=$(auth_tables)

# start NAME PORT: a broker with config $work/NAME.toml on a fresh data dir.
start() {
  rm -rf "${work:?}/$1"
  if [ "$1" = on ]; then
    printf '[server]\ndata_dir = "%s/on"\n%s\n' "$work" "$tables" > "$work/on.toml"
  else
    printf '[server]\ndata_dir = "%s/off"\n' "$work" > "$work/off.toml"
  fi
  "$bin/netlog" --config "$work/$1.toml" -listen "127.0.0.1:$2" -loglevel warn &
  pids+=($!)
  eval "pid_$1=$!"
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$2/_health" >/dev/null && return
    sleep 0.1
  done
  echo "broker $1 did not start" >&2
  exit 1
}

port=$((20000 + RANDOM % 20000))
for pass in 1 2; do
  if [ "$pass" = 1 ]; then first=off; second=on; else first=on; second=off; fi
  echo "== pass $pass: \"$first\" broker started first"
  start "$first" "$((port + 1))"
  sleep 0.5
  start "$second" "$((port + 2))"
  port_off=$([ "$first" = off ] && echo $((port + 1)) || echo $((port + 2)))
  port_on=$([ "$first" = on ] && echo $((port + 1)) || echo $((port + 2)))
  for scenario in post batch-post; do
    "$bin/examples/netlog-load" --scenario "$scenario" --duration "$seconds" --rounds "$rounds" \
      --url "http://127.0.0.1:$port_off" --pid "$pid_off" \
      --compare "http://127.0.0.1:$port_on" --compare-token "$secret" --compare-pid "$pid_on" \
      --compare-scrape 1 --json | tee -a "$work/results.txt" | grep -v '^{'
  done
  stop_brokers
done

echo "== on (auth + scrapes) against off, mean of the two passes"
grep '^{' "$work/results.txt" | jq -rs '
  group_by(.compare)[] |
  "\(.[0].compare): throughput \(([.[].throughput_change_pct] | add / length * 10 | round / 10))%" +
  " (passes: \([.[].throughput_change_pct | . * 10 | round / 10] | join(", "))), " +
  "broker CPU per request \(([.[].cpu_per_request_change_pct] | add / length * 10 | round / 10))%" +
  " (passes: \([.[].cpu_per_request_change_pct | . * 10 | round / 10] | join(", ")))"'
