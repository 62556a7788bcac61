#!/usr/bin/env bash
# CPU time a broker spends per request under wrk, from its threads' utime and
# stime in /proc, and its context switches per request: per-request costs
# that a loaded machine distorts far less than requests per second.
# usage: cpu-per-request.sh BIN PORT post|scan   (POST: 64 connections;
#        scan: one scanner, 8 connections; 100-byte messages, 4 s)
set -u
bin=${1:?usage: cpu-per-request.sh BIN PORT post|scan} port=${2:?port} mode=${3:-post}
d=$(mktemp -d)
"$bin" -listen 127.0.0.1:$port -dir $d/data >$d/log 2>&1 & pid=$!
trap 'kill $pid 2>/dev/null; rm -rf "$d"' EXIT
for i in $(seq 100); do curl -s -o /dev/null 127.0.0.1:$port/ && break; sleep 0.1; done
curl -s -XPOST 127.0.0.1:$port/bench >/dev/null
printf 'wrk.method = "POST"; wrk.body = string.rep("x", 100)\n' > $d/post.lua
wrk -t2 -c64 -d2s -s $d/post.lua http://127.0.0.1:$port/bench/payload >/dev/null 2>&1
# utime and stime ticks (1/100 s) and context switches, summed over the threads.
snap() { local u=0 s=0 v=0 n=0; for t in /proc/$pid/task/*; do read -r -a f < $t/stat; u=$((u+f[13])); s=$((s+f[14])); v=$((v+$(awk '/^voluntary_ctxt/ {print $2}' $t/status)+$(awk '/^nonvoluntary_ctxt/ {print $2}' $t/status))); done; echo "$u $s $v"; }
read u0 s0 v0 <<<"$(snap)"
if [ "$mode" = post ]; then
  out=$(wrk -t2 -c64 -d4s -s $d/post.lua http://127.0.0.1:$port/bench/payload 2>/dev/null)
else
  id=$(curl -s -XPOST "127.0.0.1:$port/bench/scanner?from=0" | sed -n 's/.*"id":"\([^"]*\)".*/\1/p')
  out=$(wrk -t2 -c8 -d4s "http://127.0.0.1:$port/bench/scan?id=$id" 2>/dev/null)
fi
read u1 s1 v1 <<<"$(snap)"
req=$(echo "$out" | awk '/requests in/ {print $1}')
python3 -c "
u,s,v,r=($u1-$u0)*10,($s1-$s0)*10,$v1-$v0,$req
print('%-28s %-4s req %8d  user %.1f  sys %.1f  ms/1k req   ctxsw/req %.2f' % ('$(basename $bin)','$mode',r,u*1000/r,s*1000/r,v/r))"
