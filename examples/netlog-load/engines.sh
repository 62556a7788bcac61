#!/usr/bin/env bash
# The storage engines side by side with the load tool, in one run: the
# embedded log, then JetStream (a 3-node nats-server cluster on loopback,
# R3 streams) through one front end and through two (`--also`: every other
# connection, and the long polls, through the second), first with the
# servers' default sync_interval (2 min), then with `sync_interval: always`.
# Each arm runs post, batch-post (100 a batch), scan (one message a
# request, 32 scanners from offset 0 of 20,000) and poll-latency (40
# messages a second, each waking 4 idle long polls: the wake latency),
# bounded by time and message count, all on 127.0.0.1. Prints one line per
# scenario and arm.
#
# usage: engines.sh NETLOG NETLOG_LOAD NATS_SERVER [SECONDS]
#   e.g. engines.sh target/release/netlog target/release/examples/netlog-load \
#        target/nats/2.15.1/nats-server 5
set -euo pipefail
netlog=${1:?usage: engines.sh NETLOG NETLOG_LOAD NATS_SERVER [SECONDS]}
load=${2:?netlog-load binary}
nats=${3:?nats-server binary}
secs=${4:-5}
d=$(mktemp -d)
pids=()
stop_all() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; pids=(); }
trap 'stop_all; rm -rf "$d"' EXIT

# Ports: netlog 7300 and 7301; nats clients 7400-7402, routes 7410-7412,
# monitors 7420-7422.
wait_http() { for _ in $(seq 300); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done; echo "no answer from $1" >&2; tail -n 5 "$d"/nats/*.log "$d"/front-*/log >&2; return 1; }

start_cluster() { # $1: more jetstream settings, after a comma
  rm -rf "$d/nats"; mkdir -p "$d/nats"
  for i in 0 1 2; do
    routes=""
    for j in 0 1 2; do [ $j = $i ] || routes="$routes nats-route://127.0.0.1:741$j"; done
    cat >"$d/nats/n$i.conf" <<EOF
server_name: n$i
listen: 127.0.0.1:740$i
http: 127.0.0.1:742$i
jetstream { store_dir: "$d/nats/n$i"$1 }
cluster { name: bench, listen: 127.0.0.1:741$i, routes: [$(echo $routes | sed 's/ /, /g')] }
EOF
    "$nats" -c "$d/nats/n$i.conf" 2>"$d/nats/n$i.log" & pids+=($!)
  done
  for i in 0 1 2; do wait_http "http://127.0.0.1:742$i/healthz"; done
}

start_front() { # $1: port, $2: engine tables (empty: embedded), $3: fsync
  local dir="$d/front-$1"; rm -rf "$dir"; mkdir -p "$dir"
  printf '[server]\nlisten = "127.0.0.1:%s"\ndata_dir = "%s/data"\nfsync = "%s"\n%s\n' \
    "$1" "$dir" "$3" "$2" >"$dir/netlog.toml"
  "$netlog" --config "$dir/netlog.toml" >"$dir/log" 2>&1 & pids+=($!)
  wait_http "http://127.0.0.1:$1/_ready"
}

engine='[engine]
kind = "jetstream"
[engine.jetstream]
servers = ["nats://127.0.0.1:7400", "nats://127.0.0.1:7401", "nats://127.0.0.1:7402"]
replicas = 3'

run_arm() { # $1: label, then extra netlog-load flags
  local label=$1; shift
  for s in post batch-post scan poll-latency; do
    # poll-latency: 40 messages a second, each waking 4 idle long polls.
    out=$("$load" --url http://127.0.0.1:7300 "$@" --scenario $s --duration "$secs" \
      --messages 200000 --connections 32 --batch 100 --prefill 20000 \
      --rate 40 --publishers 2 --subscribers 4 --json 2>"$d/load.err" || true)
    echo "$out" | grep '^{' | python3 -c '
import json, sys
line = sys.stdin.read().strip()
if not line:
    sys.exit("%-46s %-13s failed: %s" % (sys.argv[1], sys.argv[2], open(sys.argv[3]).read()[-300:]))
r = json.loads(line)
lat = "p50 %.2f ms, p99 %.2f ms" % (r["p50_us"] / 1e3, r["p99_us"] / 1e3) if r["p50_us"] else "-"
err = "; first: %s" % r["first_error"] if r["errors"] else ""
print("%-46s %-13s %9.0f msg/s  %s  (%s; errors %d%s)" % (sys.argv[1], r["scenario"], r["msgs_per_s"], lat, r["latency"], r["errors"], err))
' "$label" "$s" "$d/load.err" || true
  done
}

start_front 7300 "" 1s
run_arm "embedded, fsync 1s"
stop_all
start_front 7300 "" always
run_arm "embedded, fsync always"
stop_all

for sync in "" ", sync_interval: always"; do
  name=${sync#, }; name=${name:-"sync_interval default"}
  start_cluster "$sync"
  start_front 7300 "$engine" 1s
  run_arm "jetstream R3, 1 front, $name"
  start_front 7301 "$engine" 1s
  run_arm "jetstream R3, 2 fronts, $name" --also http://127.0.0.1:7301
  stop_all
done
