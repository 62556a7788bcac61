#!/usr/bin/env bash
# Instructions per request of a broker binary, counted by callgrind: less
# noisy than requests per second on a shared machine, and user space only.
# Starts BIN under valgrind on 127.0.0.1, warms it up with 2,000 messages
# (not counted), then counts the broker's instructions while the load tool
# sends MESSAGES through SCENARIO with 8 connections.
# usage: callgrind.sh BIN [SCENARIO] [MESSAGES]   (run from the repository root,
#        after `cargo build --release --example netlog-load`; needs valgrind)
set -euo pipefail
bin=${1:?usage: callgrind.sh BIN [SCENARIO] [MESSAGES]} scenario=${2:-post} n=${3:-10000}
port=${PORT:-7650} load=target/release/examples/netlog-load
work=$(mktemp -d); trap 'kill $vg 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$work/cg.%p" \
  "$bin" -listen 127.0.0.1:$port -dir "$work/data" >"$work/log" 2>&1 &
vg=$!
for _ in $(seq 300); do curl -s -o /dev/null 127.0.0.1:$port/ && break; sleep 0.2; done
"$load" --url http://127.0.0.1:$port --scenario "$scenario" --messages 2000 --connections 8 --prefill 3000 --duration 60 >/dev/null
callgrind_control -i on $vg >/dev/null
"$load" --url http://127.0.0.1:$port --scenario "$scenario" --messages "$n" --connections 8 --prefill "$n" --duration 120 >/dev/null
callgrind_control -i off $vg >/dev/null
callgrind_control -d $vg >/dev/null
sleep 1
out=$(ls -S "$work"/cg.* | head -1); [ -n "${KEEP:-}" ] && cp "$out" "$KEEP"
ir=$(callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
echo "$(basename "$bin") $scenario: $ir instructions, $((ir / n)) per message"
