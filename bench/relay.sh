#!/usr/bin/env bash
# bench/relay.sh DUPLEX: duplex relay against socat (fork) and haproxy (TCP
# mode), with the direct path as the limit, side by side in one run:
#  - throughput: iperf3 client -> relay -> iperf3 server (MiB/s, median of RUNS)
#  - latency: redis-benchmark -> relay -> redis-server (requests/s, p50/p99)
# A relay makes every byte cross loopback twice: about half of direct is the
# ceiling on two cores. Writes bench/results/relay-<date>.md.
# Environment: RUNS (default 3), SECS (iperf3 seconds, default 5), REQS
# (redis-benchmark requests, default 200000).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
DUPLEX=$1
RUNS=${RUNS:-3}
SECS=${SECS:-5}
REQS=${REQS:-200000}
OUT="$HERE/results/relay-$(date +%F).md"
TMP=$(mktemp -d)
mkdir -p "$HERE/results"
PIDS=()
cleanup() {
    for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
. "$HERE/lib.sh"

start_relay() { # KIND LISTEN_PORT TARGET_PORT
    case $1 in
        duplex) "$DUPLEX" relay -k "127.0.0.1:$2" "127.0.0.1:$3" 2>/dev/null & ;;
        socat) socat "TCP-LISTEN:$2,bind=127.0.0.1,fork,reuseaddr" "TCP:127.0.0.1:$3" 2>/dev/null & ;;
        haproxy)
            cat > "$TMP/haproxy.cfg" <<EOF
global
    maxconn 4000
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend f
    bind 127.0.0.1:$2
    default_backend b
backend b
    server s 127.0.0.1:$3
EOF
            haproxy -f "$TMP/haproxy.cfg" -db > /dev/null 2>&1 & ;;
        direct) return 0 ;;
    esac
    PIDS+=($!)
    wait_listen "$2"
}

iperf_through() { # KIND -> MiB/s
    local sport rport port
    sport=$(free_port)
    iperf3 -s -p "$sport" > /dev/null 2>&1 &
    local ipid=$!
    PIDS+=("$ipid")
    wait_listen "$sport"
    rport=$(free_port)
    start_relay "$1" "$rport" "$sport"
    local rpid=${PIDS[-1]}
    port=$rport
    [ "$1" = direct ] && port=$sport
    timeout $((SECS * 4 + 20)) iperf3 -c 127.0.0.1 -p "$port" -t "$SECS" -J 2>/dev/null |
        python3 -c 'import json,sys
try:
    d = json.load(sys.stdin); print(round(d["end"]["sum_received"]["bits_per_second"] / 8 / 1048576))
except Exception:
    print(0)'
    kill "$ipid" 2>/dev/null
    [ "$1" != direct ] && kill "$rpid" 2>/dev/null
    wait "$ipid" 2>/dev/null
}

redis_through() { # KIND -> "rps p50 p99" (GET)
    local sport rport port
    sport=$(free_port)
    redis-server --port "$sport" --bind 127.0.0.1 --save '' --appendonly no > /dev/null 2>&1 &
    local spid=$!
    PIDS+=("$spid")
    wait_listen "$sport"
    rport=$(free_port)
    start_relay "$1" "$rport" "$sport"
    local rpid=${PIDS[-1]}
    port=$rport
    [ "$1" = direct ] && port=$sport
    timeout 120 redis-benchmark -h 127.0.0.1 -p "$port" -n "$REQS" -c 50 -t get --csv 2>/dev/null |
        python3 -c 'import csv,sys
rows = [r for r in csv.reader(sys.stdin)]
head, vals = rows[0], rows[1]
d = dict(zip(head, vals))
print(round(float(d["rps"])), d.get("p50_latency_ms", "?"), d.get("p99_latency_ms", "?"))'
    kill "$spid" 2>/dev/null
    [ "$1" != direct ] && kill "$rpid" 2>/dev/null
    wait "$spid" 2>/dev/null
}

KINDS="duplex socat haproxy direct"
declare -A TP RPS P50 P99
for k in $KINDS; do
    vals=()
    for _ in $(seq "$RUNS"); do vals+=("$(iperf_through "$k")"); done
    TP[$k]=$(median "${vals[@]}")
    echo "relay iperf3 $k: ${vals[*]} -> ${TP[$k]} MiB/s" >&2
    read -r rps p50 p99 < <(redis_through "$k")
    RPS[$k]=$rps; P50[$k]=$p50; P99[$k]=$p99
    echo "relay redis $k: $rps req/s p50 $p50 ms p99 $p99 ms" >&2
done

{
    echo "# Relay over loopback ($(date -u +%FT%TZ), $(nproc) cores)"
    echo
    echo "iperf3 client -> relay -> iperf3 server, ${SECS} s, median of $RUNS; redis-benchmark GET, 50 clients, $REQS requests."
    echo
    echo "| relay | iperf3 MiB/s | of direct | vs socat | redis GET req/s | p50 ms | p99 ms |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    for k in $KINDS; do
        of=$(python3 -c "print(f'{${TP[$k]}/max(${TP[direct]},1):.2f}')")
        vs=$(python3 -c "print(f'{${TP[$k]}/max(${TP[socat]},1):.2f}x')")
        echo "| $k | ${TP[$k]} | $of | $vs | ${RPS[$k]} | ${P50[$k]} | ${P99[$k]} |"
    done
    echo
    echo "Command: \`bench/relay.sh $DUPLEX\` (RUNS=$RUNS SECS=$SECS REQS=$REQS)"
} | tee "$OUT"
