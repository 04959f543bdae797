#!/usr/bin/env bash
# bench/targets.sh DUPLEX: what choosing among several relay targets costs.
# `duplex bench connrate` (connect, 1 byte echoed, close: the cost is per
# connection, so this is where a choice would show) through
#  - duplex relay with 1 target, and with 3 (--balance first, roundrobin,
#    leastconn; and first with the first target down, marked down once);
#  - haproxy (TCP mode) with 1 server, and 3 servers in roundrobin, leastconn;
# the direct path as the limit. Targets: `duplex listen -k --echo`, one
# each. connections/s, median of RUNS. Writes bench/results/targets-<date>.md.
# Environment: RUNS (default 3), SECS (default 3), CONNS (default 16).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
DUPLEX=$1
RUNS=${RUNS:-3}
SECS=${SECS:-3}
CONNS=${CONNS:-16}
OUT="$HERE/results/targets-$(date +%F).md"
WORK=$(mktemp -d)
mkdir -p "$HERE/results"
PIDS=()
. "$HERE/lib.sh"
trap cleanup_work EXIT

# three echo targets
T=()
for i in 1 2 3; do
    start_echo_target "$WORK/echo$i.log" || exit 1
    T+=("$ECHO_PORT")
done
DEAD=$(free_port) # nothing listens there: refused

start() { # KIND PORT -> RPID
    local kind=$1 port=$2
    case $kind in
        duplex-1) "$DUPLEX" relay -k "127.0.0.1:$port" "127.0.0.1:${T[0]}" 2>/dev/null & ;;
        duplex-3-first|duplex-3-roundrobin|duplex-3-leastconn)
            "$DUPLEX" relay -k --balance "${kind#duplex-3-}" "127.0.0.1:$port" \
                "127.0.0.1:${T[0]}" "127.0.0.1:${T[1]}" "127.0.0.1:${T[2]}" 2>/dev/null & ;;
        duplex-3-first-down)
            "$DUPLEX" relay -k --down-time 1h "127.0.0.1:$port" \
                "127.0.0.1:$DEAD" "127.0.0.1:${T[1]}" "127.0.0.1:${T[2]}" 2>/dev/null & ;;
        haproxy-1|haproxy-3-roundrobin|haproxy-3-leastconn)
            local balance=roundrobin n=1
            [ "$kind" != haproxy-1 ] && { balance=${kind#haproxy-3-}; n=3; }
            {
                printf 'global\n    maxconn 4000\ndefaults\n    mode tcp\n    timeout connect 5s\n'
                printf '    timeout client 60s\n    timeout server 60s\n'
                printf 'frontend f\n    bind 127.0.0.1:%s\n    default_backend b\n' "$port"
                printf 'backend b\n    balance %s\n' "$balance"
                for i in $(seq 0 $((n - 1))); do printf '    server s%d 127.0.0.1:%s\n' "$i" "${T[$i]}"; done
            } > "$WORK/haproxy.cfg"
            haproxy -f "$WORK/haproxy.cfg" -db > /dev/null 2>&1 & ;;
    esac
    RPID=$!
    PIDS+=("$RPID")
    wait_listen "$port" || { echo "$kind did not listen" >&2; exit 1; }
}

connrate() { # PORT -> connections/s
    "$DUPLEX" bench connrate 127.0.0.1 "$1" -c "$CONNS" -d "$SECS" -w 1 --json 2>/dev/null |
        sed -n 's/.*"msgs_per_s":\([0-9]*\).*"p99_us":\([0-9.]*\).*"errors":\([0-9]*\).*/\1 \2 \3/p'
}

declare -A RATE P99 ERR RANGE
KINDS="direct duplex-1 duplex-3-first duplex-3-roundrobin duplex-3-leastconn duplex-3-first-down"
command -v haproxy > /dev/null && KINDS="$KINDS haproxy-1 haproxy-3-roundrobin haproxy-3-leastconn"
for kind in $KINDS; do
    rates=() p99s=() errs=0
    for _ in $(seq "$RUNS"); do
        if [ "$kind" = direct ]; then
            port=${T[0]}
        else
            port=$(free_port)
            start "$kind" "$port"
            # the down target is found down by the first client, then skipped
            [ "$kind" = duplex-3-first-down ] && "$DUPLEX" connect -w 2 127.0.0.1 "$port" < /dev/null > /dev/null 2>&1
        fi
        read -r r p e <<< "$(connrate "$port")"
        rates+=("${r:-0}") p99s+=("${p:-0}") errs=$((errs + ${e:-0}))
        if [ "$kind" != direct ]; then kill_tree "$RPID"; forget "$RPID"; fi
    done
    RATE[$kind]=$(median "${rates[@]}")
    RANGE[$kind]=$(printf '%s\n' "${rates[@]}" | sort -n | sed -n '1p;$p' | paste -sd-)
    P99[$kind]=$(median "${p99s[@]}")
    ERR[$kind]=$errs
    echo "$kind: ${RATE[$kind]} conn/s (runs: ${rates[*]}), p99 ${P99[$kind]} us, errors $errs" >&2
done

{
    echo "# Relay to several targets: connection rate (${DATE:-$(date -u +%FT%TZ)}, $(nproc) cores)"
    echo
    echo "\`duplex bench connrate\` (connect, 1 byte echoed, close), $CONNS connections, ${SECS} s, median of $RUNS;"
    echo "targets: \`duplex listen -k --echo\`. \"of 1 target\": against the same relay with one target."
    echo "first sends every client to the first target, as with one: the difference is the cost of the"
    echo "choice alone. roundrobin and leastconn spread the clients over three echo servers (three"
    echo "processes), so they may be faster than one target. first-down: the first target refuses,"
    echo "marked down by one client before the run; the others skip it. \"runs\": the spread of the"
    echo "runs; where the machine is shared, differences inside it are noise."
    echo
    echo "| path | conn/s | runs (min-max) | p99 us | of 1 target | errors |"
    echo "|---|---:|---:|---:|---:|---:|"
    for kind in $KINDS; do
        base=${RATE[duplex-1]}
        case $kind in haproxy-*) base=${RATE[haproxy-1]:-0} ;; direct) base=${RATE[direct]} ;; esac
        ratio=$(awk -v a="${RATE[$kind]}" -v b="$base" 'BEGIN { printf (b > 0 ? "%.2f" : "-"), a / b }')
        echo "| $kind | ${RATE[$kind]} | ${RANGE[$kind]} | ${P99[$kind]} | $ratio | ${ERR[$kind]} |"
    done
    echo
    echo "Command: \`bench/targets.sh $DUPLEX\` (RUNS=$RUNS SECS=$SECS CONNS=$CONNS)"
} > "$OUT"
cat "$OUT"
