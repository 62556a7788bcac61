#!/usr/bin/env bash
# Measures what authentication and metrics cost on the publish path: two
# brokers from the same binary, side by side on 127.0.0.1, run alternately by
# `netlog-load --compare` (see compare.rs).
#   A (off): no [auth], never scraped.
#   B (on):  ten [[auth.tokens]] (the load tool's last, so every request
#            hashes the secret, compares all ten hashes and matches a glob),
#            and /_metrics scraped every second during B's runs.
# Usage: examples/netlog-load/auth-metrics-cost.sh [ROUNDS] [SECONDS]
# Builds the release binaries first. Leaves nothing running; data goes to a
# temporary directory that is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}
seconds=${2:-6}
cargo build --release --bin netlog --example netlog-load >&2
bin=${CARGO_TARGET_DIR:-target}/release
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

secret=$("$bin/netlog" token new | sed -n 's/^secret: //p')
hash=$(printf '%s' "$secret" | "$bin/netlog" token hash)
{
  printf '[server]\ndata_dir = "%s/on"\n' "$work"
  for i in $(seq 1 9); do
    other=$("$bin/netlog" token new | sed -n 's/^sha256: //p')
    printf '\n[[auth.tokens]]\nname = "other-%s"\nsha256 = "%s"\nproduce = ["other-%s"]\n' "$i" "$other" "$i"
  done
  printf '\n[[auth.tokens]]\nname = "load"\nsha256 = "%s"\n' "$hash"
  printf 'produce = ["other", "load-*"]\nconsume = ["load-*"]\nadmin = true\n'
} > "$work/on.toml"
printf '[server]\ndata_dir = "%s/off"\n' "$work" > "$work/off.toml"

port_off=$((20000 + RANDOM % 20000))
port_on=$((port_off + 1))
"$bin/netlog" --config "$work/off.toml" -listen "127.0.0.1:$port_off" -loglevel warn &
pids+=($!)
"$bin/netlog" --config "$work/on.toml" -listen "127.0.0.1:$port_on" -loglevel warn &
pids+=($!)
for port in "$port_off" "$port_on"; do
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$port/_health" >/dev/null && break
    sleep 0.1
  done
done

for scenario in post batch-post; do
  "$bin/examples/netlog-load" --scenario "$scenario" --duration "$seconds" --rounds "$rounds" \
    --url "http://127.0.0.1:$port_off" --pid "${pids[0]}" \
    --compare "http://127.0.0.1:$port_on" --compare-token "$secret" --compare-pid "${pids[1]}" \
    --compare-scrape 1 --json
done
