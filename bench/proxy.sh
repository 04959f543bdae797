#!/usr/bin/env bash
# bench/proxy.sh DUPLEX: tunnel throughput of duplex's proxy server (listen
# --proxy-type socks5 and http) against microsocks (SOCKS5) and tinyproxy
# (HTTP CONNECT), with the direct path as the limit, in one run: a source
# (duplex listen, SIZE bytes from a pipe) -> proxy -> the duplex client
# (-x, -d) into /dev/null; MiB/s, median of RUNS. Writes
# bench/results/proxy-<date>.md. Environment: RUNS (default 3), SIZE (bytes,
# default 2 GiB). A run that did not get every byte counts 0.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
DUPLEX=$1
RUNS=${RUNS:-3}
SIZE=${SIZE:-$((2 << 30))}
OUT="$HERE/results/proxy-$(date +%F).md"
WORK=$(mktemp -d)
mkdir -p "$HERE/results"
PIDS=()
. "$HERE/lib.sh"
trap cleanup_work EXIT

start_proxy() { # KIND PORT -> the client's -X
    case $1 in
        duplex-socks5) "$DUPLEX" listen --proxy-type socks5 127.0.0.1 "$2" 2>/dev/null & echo 5 > "$WORK/x" ;;
        duplex-http) "$DUPLEX" listen --proxy-type http 127.0.0.1 "$2" 2>/dev/null & echo connect > "$WORK/x" ;;
        microsocks) microsocks -i 127.0.0.1 -p "$2" > /dev/null 2>&1 & echo 5 > "$WORK/x" ;;
        tinyproxy)
            printf 'Port %s\nListen 127.0.0.1\nTimeout 60\nAllow 127.0.0.1\nLogLevel Critical\nMaxClients 10\n' "$2" > "$WORK/tp.conf"
            tinyproxy -d -c "$WORK/tp.conf" > /dev/null 2>&1 & echo connect > "$WORK/x" ;;
    esac
    PIDS+=($!)
    wait_listen "$2"
}

through() { # KIND -> MiB/s of one download of SIZE bytes
    local sport pport t0 t1 via=()
    sport=$(free_port)
    head -c "$SIZE" /dev/zero | "$DUPLEX" listen 127.0.0.1 "$sport" > /dev/null 2>&1 &
    local spid=$!
    wait_listen "$sport"
    if [ "$1" != direct ]; then
        pport=$(free_port)
        start_proxy "$1" "$pport"
        via=(-x "127.0.0.1:$pport" -X "$(cat "$WORK/x")")
    fi
    t0=$(date +%s.%N)
    timeout 120 "$DUPLEX" -v "${via[@]}" -d 127.0.0.1 "$sport" > /dev/null 2> "$WORK/client.err"
    t1=$(date +%s.%N)
    [ "$1" != direct ] && kill_tree "${PIDS[-1]}"
    kill "$spid" 2>/dev/null
    wait "$spid" 2>/dev/null
    # every byte, or it does not count (a refused tunnel is fast)
    if grep -q "received $SIZE bytes" "$WORK/client.err"; then
        python3 -c "print(round($SIZE / 1048576 / ($t1 - $t0)))"
    else
        echo 0
    fi
}

KINDS="direct duplex-socks5 duplex-http"
command -v microsocks > /dev/null && KINDS="$KINDS microsocks"
command -v tinyproxy > /dev/null && KINDS="$KINDS tinyproxy"
declare -A TP
for k in $KINDS; do
    vals=()
    for _ in $(seq "$RUNS"); do vals+=("$(through "$k")"); done
    TP[$k]=$(median "${vals[@]}")
    echo "proxy $k: ${vals[*]} -> ${TP[$k]} MiB/s" >&2
done

{
    echo "# Proxy tunnels over loopback ($(date -u +%FT%TZ), $(nproc) cores)"
    echo
    echo "source -> proxy -> duplex client, $((SIZE >> 20)) MiB one way, median of $RUNS."
    echo
    echo "| proxy | MiB/s | of direct | vs microsocks | vs tinyproxy |"
    echo "|---|---:|---:|---:|---:|"
    for k in $KINDS; do
        of=$(python3 -c "print(f'{${TP[$k]}/max(${TP[direct]},1):.2f}')")
        vm=-; vt=-
        [ -n "${TP[microsocks]:-}" ] && vm=$(python3 -c "print(f'{${TP[$k]}/max(${TP[microsocks]},1):.2f}x')")
        [ -n "${TP[tinyproxy]:-}" ] && vt=$(python3 -c "print(f'{${TP[$k]}/max(${TP[tinyproxy]},1):.2f}x')")
        echo "| $k | ${TP[$k]} | $of | $vm | $vt |"
    done
    echo
    echo "Command: \`bench/proxy.sh $DUPLEX\` (RUNS=$RUNS SIZE=$SIZE)"
} | tee "$OUT"
