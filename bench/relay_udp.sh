#!/usr/bin/env bash
# bench/relay_udp.sh DUPLEX: datagrams/s through `duplex relay -u` against
# socat `UDP4-LISTEN:PORT,fork UDP4:TARGET` (a process per client), with the
# direct path as the limit, side by side in one run. bench/build/udp_load
# (make -C bench) is both ends: a C echo target and a closed-loop load of
# CLIENTS sockets, each keeping WINDOW datagrams of SIZE bytes in flight;
# every answer is checked to carry its client's own number (the "wrong"
# column counts those that did not). Answered datagrams/s, median of RUNS. Writes
# bench/results/relay_udp-<date>.md.
# Environment: RUNS (default 3), SECS (default 3), CLIENTS (default "1 50"),
# WINDOW (default 8), SIZE (default 64 bytes).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
DUPLEX=$1
RUNS=${RUNS:-3}
SECS=${SECS:-3}
CLIENTS=${CLIENTS:-"1 50"}
WINDOW=${WINDOW:-8}
SIZE=${SIZE:-64}
LOAD="$HERE/build/udp_load"
OUT="$HERE/results/relay_udp-$(date +%F).md"
WORK=$(mktemp -d)
mkdir -p "$HERE/results"
PIDS=()
. "$HERE/lib.sh"
trap cleanup_work EXIT
[ -x "$LOAD" ] || make -C "$HERE" build/udp_load > /dev/null || exit 1

udp_port() { # a UDP port on 127.0.0.1 that was free a moment ago
    python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_bound() { # PORT: until a UDP socket is bound to it (asked of ss)
    for _ in $(seq 100); do
        ss -Hlun "sport = :$1" | grep -q . && return 0
        sleep 0.05
    done
    return 1
}

through() { # KIND CLIENTS -> "datagrams/s lost wrong"
    local tport rport port tpid rpid=
    tport=$(udp_port)
    "$LOAD" echo "$tport" &
    tpid=$!
    PIDS+=("$tpid")
    wait_bound "$tport"
    rport=$(udp_port)
    case $1 in
        duplex) "$DUPLEX" relay -u -k "127.0.0.1:$rport" "127.0.0.1:$tport" 2>/dev/null & rpid=$! ;;
        socat) socat "UDP4-LISTEN:$rport,bind=127.0.0.1,fork,reuseaddr" "UDP4:127.0.0.1:$tport" \
                   2>/dev/null & rpid=$! ;;
        direct) rport=$tport ;;
    esac
    if [ -n "$rpid" ]; then
        PIDS+=("$rpid")
        wait_bound "$rport"
    fi
    port=$rport
    timeout $((SECS + 20)) "$LOAD" load "$port" "$2" "$WINDOW" "$SECS" "$SIZE"
    [ -n "$rpid" ] && { kill_tree "$rpid"; forget "$rpid"; }
    kill_tree "$tpid"
    forget "$tpid"
}

KINDS="duplex socat direct"
declare -A RATE LOST WRONG
for n in $CLIENTS; do
    for k in $KINDS; do
        vals=() lost=0 wrong=0
        for _ in $(seq "$RUNS"); do
            read -r rate l w < <(through "$k" "$n")
            vals+=("${rate:-0}")
            lost=$((lost + ${l:-0}))
            wrong=$((wrong + ${w:-0}))
        done
        RATE[$k,$n]=$(median "${vals[@]}")
        LOST[$k,$n]=$lost
        WRONG[$k,$n]=$wrong
        echo "relay -u $k, $n clients: ${vals[*]} -> ${RATE[$k,$n]} datagrams/s ($lost lost, $wrong wrong)" >&2
    done
done

{
    echo "# UDP relay over loopback ($(date -u +%FT%TZ), $(nproc) cores)"
    echo
    echo "udp_load: CLIENTS sockets, $WINDOW datagrams of $SIZE bytes in flight each, ${SECS} s,"
    echo "answered datagrams/s, median of $RUNS; over all runs, lost: datagrams unanswered after"
    echo "200 ms; wrong: answers that reached another client than the one that asked."
    echo
    echo "| relay | clients | datagrams/s | of direct | vs socat | lost | wrong |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    for n in $CLIENTS; do
        for k in $KINDS; do
            of=$(python3 -c "print(f'{${RATE[$k,$n]}/max(${RATE[direct,$n]},1):.2f}')")
            vs=$(python3 -c "print(f'{${RATE[$k,$n]}/max(${RATE[socat,$n]},1):.2f}x')")
            echo "| $k | $n | ${RATE[$k,$n]} | $of | $vs | ${LOST[$k,$n]} | ${WRONG[$k,$n]} |"
        done
    done
    echo
    echo "Command: \`bench/relay_udp.sh $DUPLEX\` (RUNS=$RUNS SECS=$SECS CLIENTS=\"$CLIENTS\" WINDOW=$WINDOW SIZE=$SIZE)"
} | tee "$OUT"
