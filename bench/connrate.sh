#!/usr/bin/env bash
# bench/connrate.sh DUPLEX [OLD_DUPLEX]: connections per second through a
# TCP relay, duplex against haproxy (TCP mode) and socat (fork per client),
# runs interleaved so a busy machine weighs on all alike. `duplex bench
# connrate` (connect, 1 byte echoed, close) through each to one `duplex
# listen -k --echo`; OLD_DUPLEX (a build before a change) adds its relay as
# a row. connections/s, median of RUNS, and the ratio to haproxy. haproxy
# runs a thread per core by default; duplex relay runs one event loop, so
# haproxy-1thread (nbthread 1) is the like-for-like row.
# Writes bench/results/connrate-<date>.md.
# Environment: RUNS (default 3), SECS (default 3), CONNS (default 16).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
DUPLEX=$1
OLD=${2:-}
RUNS=${RUNS:-3}
SECS=${SECS:-3}
CONNS=${CONNS:-16}
OUT="$HERE/results/connrate-$(date +%F).md"
WORK=$(mktemp -d)
mkdir -p "$HERE/results"
PIDS=()
. "$HERE/lib.sh"
trap cleanup_work EXIT

start_echo_target "$WORK/echo.log" || exit 1
T=$ECHO_PORT

start() { # KIND PORT -> RPID
    local kind=$1 port=$2
    case $kind in
        duplex) "$DUPLEX" relay -k "127.0.0.1:$port" "127.0.0.1:$T" 2>/dev/null & ;;
        duplex-old) "$OLD" relay -k "127.0.0.1:$port" "127.0.0.1:$T" 2>/dev/null & ;;
        haproxy|haproxy-1thread)
            local nb=""
            [ "$kind" = haproxy-1thread ] && nb='    nbthread 1\n'
            {
            printf "global\n    maxconn 4000\n$nb"
            printf 'defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 60s\n    timeout server 60s\nfrontend f\n    bind 127.0.0.1:%s\n    default_backend b\nbackend b\n    server s0 127.0.0.1:%s\n' \
                "$port" "$T"
            } > "$WORK/haproxy.cfg"
            haproxy -f "$WORK/haproxy.cfg" -db > /dev/null 2>&1 & ;;
        socat) socat "TCP-LISTEN:$port,bind=127.0.0.1,fork,reuseaddr" "TCP:127.0.0.1:$T" 2>/dev/null & ;;
    esac
    RPID=$!
    PIDS+=("$RPID")
    wait_listen "$port" || { echo "$kind did not listen" >&2; exit 1; }
}

connrate() { # PORT -> connections/s, p99 us, errors
    "$DUPLEX" bench connrate 127.0.0.1 "$1" -c "$CONNS" -d "$SECS" -w 1 --json 2>/dev/null |
        sed -n 's/.*"msgs_per_s":\([0-9]*\).*"p99_us":\([0-9.]*\).*"errors":\([0-9]*\).*/\1 \2 \3/p'
}

KINDS="duplex"
[ -n "$OLD" ] && KINDS="duplex-old $KINDS"
command -v haproxy > /dev/null && KINDS="$KINDS haproxy haproxy-1thread"
command -v socat > /dev/null && KINDS="$KINDS socat"
declare -A RATES ERR
for _ in $(seq "$RUNS"); do
    for kind in $KINDS; do
        port=$(free_port)
        start "$kind" "$port"
        read -r r _ e <<< "$(connrate "$port")"
        RATES[$kind]="${RATES[$kind]:-} ${r:-0}"
        ERR[$kind]=$((${ERR[$kind]:-0} + ${e:-0}))
        kill_tree "$RPID"; forget "$RPID"
        echo "$kind: ${r:-0} conn/s" >&2
    done
done

declare -A MED
for kind in $KINDS; do
    # shellcheck disable=SC2086
    MED[$kind]=$(median ${RATES[$kind]})
done
{
    echo "# Relay connection rate (${DATE:-$(date -u +%FT%TZ)}, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg))"
    echo
    echo "\`duplex bench connrate\` (connect, 1 byte echoed, close), $CONNS connections, ${SECS} s, median of $RUNS"
    echo "interleaved runs; one \`duplex listen -k --echo\` target. socat forks a process per client."
    echo
    echo "| relay | conn/s | runs | of haproxy | errors |"
    echo "|---|---:|---|---:|---:|"
    for kind in $KINDS; do
        ratio=$(awk -v a="${MED[$kind]}" -v b="${MED[haproxy]:-0}" 'BEGIN { printf (b > 0 ? "%.2f" : "-"), a / b }')
        echo "| $kind | ${MED[$kind]} |${RATES[$kind]} | $ratio | ${ERR[$kind]} |"
    done
    echo
    echo "Command: \`bench/connrate.sh $DUPLEX${OLD:+ $OLD}\` (RUNS=$RUNS SECS=$SECS CONNS=$CONNS)"
} > "$OUT"
cat "$OUT"
