#!/usr/bin/env bash
# make demo: a two-namespace veth lab. A "server" namespace runs xdpguard
# with examples/policy.yaml and a few listeners; a "client" namespace scans
# it with nmap and floods it with hping3. Everything is removed on exit,
# success or failure. Never touches the machine's own interfaces.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$PWD/bin/xdpguard
POLICY=$PWD/examples/policy.yaml
id=$(printf '%04x' $((RANDOM)))
SRV=xgdemo-s$id CLI=xgdemo-c$id
SIF=xgds$id CIF=xgdc$id
SRV4=198.18.250.1 CLI4=198.18.250.2 SRV6=2001:2:0:fa::1 CLI6=2001:2:0:fa::2
work=$(mktemp -d)
pids=()

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
in_srv() { ip netns exec "$SRV" "$@"; }
in_cli() { ip netns exec "$CLI" "$@"; }
# Background jobs call `ip netns exec` directly, not through these
# functions: $! must be the process itself (ip execs it), not a subshell
# whose kill would orphan it.

cleanup() {
  set +e
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  in_srv "$BIN" detach --all >/dev/null 2>&1
  ip netns del "$SRV" 2>/dev/null
  ip netns del "$CLI" 2>/dev/null
  rm -rf "/run/xdpguard/bpffs/xdpguard/netns-$SRV" "$work"
}
trap cleanup EXIT

# wait_for WHAT SECONDS CMD...: run CMD until it succeeds, for at most
# SECONDS; a readiness is waited for, never guessed with a fixed sleep.
wait_for() {
  local what=$1 secs=$2; shift 2
  local deadline=$((SECONDS + secs))
  until "$@"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "timed out after ${secs}s waiting for $what" >&2
      return 1
    fi
    sleep 0.1
  done
}
listening() { for port in "$@"; do [ -n "$(in_srv ss -Hltn "sport = :$port")" ] || return 1; done; }
daemon_ready() {
  [ -f "$work/ready" ] && return 0
  kill -0 "$daemon" 2>/dev/null || { echo "xdpguard run exited:" >&2; cat "$work/daemon.log" >&2; exit 1; }
  return 1
}
# The flood has reached the filter: the per-source limit refuses SYNs.
flood_refused() {
  local m
  m=$(in_srv curl -s 127.0.0.1:9477/metrics) || return 1
  grep '^xdpguard_drops_total{.*reason="rate_limited"' <<<"$m" | grep -qv ' 0$'
}
now() { date +%s.%N; }

[ "$(id -u)" -eq 0 ] || { echo "make demo needs root (network namespaces, BPF)"; exit 1; }

step "lab: namespaces $SRV (xdpguard) and $CLI (client), veth $SIF <-> $CIF"
ip netns add "$SRV"; ip netns add "$CLI"
ip link add "$SIF" netns "$SRV" type veth peer name "$CIF" netns "$CLI"
in_srv ip addr add $SRV4/24 dev "$SIF"; in_srv ip addr add $SRV6/64 dev "$SIF" nodad
in_cli ip addr add $CLI4/24 dev "$CIF"; in_cli ip addr add $CLI6/64 dev "$CIF" nodad
for ns in "$SRV" "$CLI"; do ip netns exec "$ns" ip link set lo up; done
in_srv ip link set "$SIF" up; in_cli ip link set "$CIF" up
# `ip netns exec` hides /sys/fs/bpf; this host-shared bpffs keeps the pins.
mkdir -p /run/xdpguard/bpffs
mountpoint -q /run/xdpguard/bpffs || mount -t bpf -o mode=0700 bpf /run/xdpguard/bpffs

step "services in $SRV: web on 80 and 443 (allowed), a database on 5432 (listening, NOT allowed)"
for port in 80 443 5432; do
  ip netns exec "$SRV" python3 -m http.server "$port" --bind :: >/dev/null 2>&1 & pids+=($!)
done
wait_for "the web servers to listen" 30 listening 80 443 5432

step "policy ($POLICY)"
cat "$POLICY"
"$BIN" check --policy "$POLICY"

step "xdpguard run --iface $SIF"
ip netns exec "$SRV" "$BIN" run --iface "$SIF" --policy "$POLICY" --ready-file "$work/ready" --events "$work/drops.jsonl" --events-rate 20 2>"$work/daemon.log" & daemon=$!; pids+=($daemon)
wait_for "xdpguard to attach" 60 daemon_ready || { cat "$work/daemon.log"; exit 1; }
cat "$work/daemon.log"

step "port scan from $CLI (nmap -sS, IPv4 then IPv6): only the allowed ports answer; 5432 is filtered although it listens"
in_cli nmap -sS -n -Pn -p 1-1024,5432,8080,9000-9003 --max-retries 1 --max-rtt-timeout 100ms "$SRV4" | grep -E '^(PORT|[0-9]+/tcp|Not shown)'
in_cli nmap -6 -sS -n -Pn -p 1-1024,5432,8080,9000-9003 --max-retries 1 --max-rtt-timeout 100ms "$SRV6" | grep -E '^(PORT|[0-9]+/tcp|Not shown)'
echo "-- the database port, asked for explicitly:"
in_cli nmap -sS -n -Pn -p 80,5432 --max-retries 1 --max-rtt-timeout 100ms "$SRV4" | grep -E '^[0-9]+/tcp'

step "SYN flood from $CLI4 to port 80, 3 s or more (hping3 --flood); policy allows 100 SYN/s per source, burst 200"
# The flood lasts until what watches it is done (and 3 s at least), not
# for a fixed time a slow machine could spend before top even samples.
flood_start=$(now)
ip netns exec "$CLI" hping3 -q -S -p 80 --flood "$SRV4" >/dev/null 2>&1 & flood=$!; pids+=($flood)
wait_for "the flood to reach the filter" 30 flood_refused
echo "-- xdpguard top, during the flood (line mode; on a terminal it is full-screen):"
in_srv "$BIN" top --count 1 --interval 1s --limit 5
step "meanwhile a legitimate client from another address still gets the page"
in_cli ip addr add 198.18.250.3/24 dev "$CIF"
in_cli curl -s -o /dev/null --max-time 30 -w 'HTTP %{http_code} from 198.18.250.3 in %{time_total}s, during the flood\n' --interface 198.18.250.3 "http://$SRV4/"
sleep "$(awk -v s="$flood_start" -v n="$(now)" 'BEGIN { r = 3 - (n - s); print (r > 0 ? r : 0) }')" # pace: 3 s of flood at least
kill "$flood"; wait "$flood" 2>/dev/null || true
flood_secs=$(awk -v s="$flood_start" -v n="$(now)" 'BEGIN { printf "%.1f", n - s }')
echo "-- the flood ran ${flood_secs}s"

step "drop events (--events, sampled in the kernel to 20/s): the first three of $(wc -l <"$work/drops.jsonl")"
head -3 "$work/drops.jsonl"

step "xdpguard status"
in_srv "$BIN" status

step "metrics (curl 127.0.0.1:9477/metrics inside $SRV)"
metrics=$(in_srv curl -s 127.0.0.1:9477/metrics)
grep -E '^xdpguard_(drops_total|passed_total|packets_total)' <<<"$metrics" | grep -v ' 0$'
echo "-- top ports by drops (of $(grep -c '^xdpguard_port_drops_total' <<<"$metrics") port series):"
grep -E '^xdpguard_port_drops_total' <<<"$metrics" | grep -v ' 0$' | sort -k2 -nr | sed -n 1,5p # sed reads all: no SIGPIPE under pipefail

step "summary"
in_srv "$BIN" status --output json | FLOOD_SECS=$flood_secs python3 -c '
import json, os, sys
for s in json.load(sys.stdin):
    r = s["reasons"]
    print("%s: %d packets, %d dropped: %d SYNs to closed ports (the scans), "
          "%d SYNs over the per-source rate (the flood), %d malformed; %d SYNs allowed (about 100/s x %s s + 200 burst from the flooder, plus the real clients)"
          % (s["interface"], s["packets"], s["dropped"], r["drop_port_not_allowed"],
             r["drop_rate_limited"], r["drop_malformed"], r["pass_syn_allowed"], os.environ["FLOOD_SECS"]))'
echo
echo "cleaning up (filter detached, namespaces and pins removed)"
