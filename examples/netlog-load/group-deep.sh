#!/usr/bin/env bash
# A consumer group holding 1,000,000 leases: the broker's RSS, receive and
# ack latency against an empty group (the load tool's group-deep scenario),
# and the time a restart takes until the group answers again, after a clean
# stop and after kill -9.
# usage: group-deep.sh BIN LOAD PORT [PENDING]
#   BIN: target/release/netlog; LOAD: target/release/examples/netlog-load
set -u
bin=${1:?usage: group-deep.sh BIN LOAD PORT [PENDING]} load=${2:?load tool} port=${3:?port}
pending=${4:-1000000}
d=$(mktemp -d)
pid=
start() { "$bin" --listen 127.0.0.1:$port --dir $d/data >>$d/log 2>&1 & pid=$!; }
trap 'kill -9 $pid 2>/dev/null; rm -rf "$d"' EXIT
rss() { awk '/^VmRSS/ {printf "%.0f MB", $2/1024}' /proc/$pid/status; }
ms_now() { date +%s%3N; }
start
for i in $(seq 100); do curl -s -o /dev/null 127.0.0.1:$port/ && break; sleep 0.1; done
echo "RSS at start: $(rss)"
"$load" --url http://127.0.0.1:$port --scenario group-deep --pending $pending --keep \
  --topic-prefix deep 2>&1 | grep -v '^\s*$'
topic=$(curl -s 127.0.0.1:$port/_topics 2>/dev/null | grep -o 'deep-group-deep-[0-9a-f]*' | head -1)
[ -n "$topic" ] || topic=$(ls $d/data | grep '^deep-group-deep-' | head -1)
echo "RSS with the deep group: $(rss)"
info() { curl -s 127.0.0.1:$port/$topic/groups/deep | grep -o '"pending":{[^}]*}'; }
echo "deep group pending: $(info)"
for how in TERM KILL; do
  kill -$how $pid; wait $pid 2>/dev/null
  t0=$(ms_now); start
  for i in $(seq 6000); do
    curl -sf -o /dev/null 127.0.0.1:$port/$topic/groups/deep && break; sleep 0.005
  done
  echo "restart after SIG$how: group answers after $(( $(ms_now) - t0 )) ms; pending $(info); RSS $(rss)"
done
