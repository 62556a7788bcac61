#!/usr/bin/env bash
# Same-run A/B of single publishes: starts every BIN side by side on
# 127.0.0.1 (the Go netlog too, if given), then for each round measures
# `wrk -t2 -c64` POSTs of 100 bytes against each in turn. Ratios within a
# round count; absolute figures depend on what else the machine does.
# usage: ab-post.sh ROUNDS SECONDS BIN...   (needs wrk and curl)
set -u
rounds=${1:?usage: ab-post.sh ROUNDS SECONDS BIN...} secs=${2:?seconds}; shift 2
[ $# -gt 0 ] || { echo "usage: ab-post.sh ROUNDS SECONDS BIN..."; exit 1; }
tmp=$(mktemp -d); pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"' EXIT
printf 'wrk.method = "POST"; wrk.body = string.rep("x", 100)\n' > "$tmp/post.lua"
port=7600
for bin in "$@"; do
  "$bin" -listen 127.0.0.1:$port -dir "$tmp/d$port" >/dev/null 2>&1 & pids+=($!)
  port=$((port + 1))
done
port=7600
for _ in "$@"; do
  for _ in $(seq 100); do curl -s -o /dev/null 127.0.0.1:$port/ && break; sleep 0.1; done
  curl -s -XPOST 127.0.0.1:$port/bench >/dev/null
  port=$((port + 1))
done
for round in $(seq "$rounds"); do
  line="round $round:"
  port=7600
  for bin in "$@"; do
    rps=$(wrk -t2 -c64 -d"${secs}"s -s "$tmp/post.lua" http://127.0.0.1:$port/bench/payload 2>/dev/null |
      awk '/Requests\/sec/ {print int($2)}')
    line="$line $(basename "$bin")=${rps:-0}"
    port=$((port + 1))
  done
  echo "$line"
done
