#!/usr/bin/env bash
# bench/bulk.sh DUPLEX: bulk transfer over loopback, duplex against OpenBSD nc,
# ncat and socat, side by side in one run, with iperf3 memory-to-memory as the
# limit. Two inputs: a file in the page cache (`X connect < file`) and a pipe
# (`head -c SIZE /dev/zero | X connect`); the receiver is `X listen > /dev/null`.
# MiB/s is SIZE over the wall time from the client's start to both ends'
# exit; median of RUNS. Writes bench/results/bulk-<date>.md.
# Environment: BULK_MIB (default 2048), RUNS (default 3), TOOLS.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
DUPLEX=$1
MIB=${BULK_MIB:-2048}
RUNS=${RUNS:-3}
TOOLS=${TOOLS:-"duplex nc ncat socat"}
FILE=${TMPDIR:-/tmp}/duplex-bench-$MIB.bin
OUT="$HERE/results/bulk-$(date +%F).md"
mkdir -p "$HERE/results"
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null; done; }
trap cleanup EXIT
. "$HERE/lib.sh"

[ -f "$FILE" ] && [ "$(stat -c %s "$FILE")" -eq $((MIB * 1048576)) ] || head -c $((MIB * 1048576)) /dev/urandom > "$FILE"
cat "$FILE" > /dev/null # into the page cache

server_cmd() { # TOOL PORT
    case $1 in
        duplex) echo "$DUPLEX listen 127.0.0.1 $2" ;;
        nc) echo "nc.openbsd -l 127.0.0.1 $2" ;;
        ncat) echo "ncat -l 127.0.0.1 $2" ;;
        socat) echo "socat TCP-LISTEN:$2,bind=127.0.0.1,reuseaddr -" ;;
    esac
}
client_cmd() { # TOOL PORT
    case $1 in
        duplex) echo "$DUPLEX connect 127.0.0.1 $2" ;;
        nc) echo "nc.openbsd -N 127.0.0.1 $2" ;;
        ncat) echo "ncat 127.0.0.1 $2" ;;
        socat) echo "socat - TCP:127.0.0.1:$2" ;;
    esac
}

one_run() { # TOOL INPUT(file|pipe) -> MiB/s
    local port srv t0 t1
    port=$(free_port)
    $(server_cmd "$1" "$port") > /dev/null 2>/dev/null < /dev/null &
    srv=$!
    PIDS+=("$srv")
    # no probe connection: these servers take one client only
    wait_listen "$port" || { echo 0; return; }
    t0=$(date +%s.%N)
    if [ "$2" = file ]; then
        $(client_cmd "$1" "$port") < "$FILE" > /dev/null 2>&1
    else
        head -c $((MIB * 1048576)) /dev/zero | $(client_cmd "$1" "$port") > /dev/null 2>&1
    fi
    wait "$srv" 2>/dev/null
    t1=$(date +%s.%N)
    python3 -c "print(f'{$MIB / ($t1 - $t0):.0f}')"
}


iperf_direct() {
    local port
    port=$(free_port)
    iperf3 -s -1 -p "$port" > /dev/null 2>&1 &
    PIDS+=($!)
    sleep 0.3
    iperf3 -c 127.0.0.1 -p "$port" -n "${MIB}M" -J 2>/dev/null |
        python3 -c 'import json,sys; d=json.load(sys.stdin); print(round(d["end"]["sum_received"]["bits_per_second"]/8/1048576))'
}

declare -A RES
for input in file pipe; do
    for tool in $TOOLS; do
        vals=()
        for _ in $(seq "$RUNS"); do vals+=("$(one_run "$tool" "$input")"); done
        RES[$input,$tool]=$(median "${vals[@]}")
        echo "bulk $input $tool: ${vals[*]} -> median ${RES[$input,$tool]} MiB/s" >&2
    done
done
vals=()
for _ in $(seq "$RUNS"); do vals+=("$(iperf_direct)"); done
IPERF=$(median "${vals[@]}")

{
    echo "# Bulk transfer over loopback, $MIB MiB, median of $RUNS ($(date -u +%FT%TZ), $(nproc) cores)"
    echo
    echo "Receiver \`X listen > /dev/null\`; sender \`X connect < file\` (page cache) or \`head -c | X connect\`."
    echo "iperf3 memory to memory (no copy through a process's stdio): $IPERF MiB/s."
    echo
    echo "| tool | from a file MiB/s | vs best peer | from a pipe MiB/s | vs best peer |"
    echo "|---|---:|---:|---:|---:|"
    for input in file pipe; do
        best=0
        for tool in $TOOLS; do
            [ "$tool" = duplex ] && continue
            v=${RES[$input,$tool]}
            [ "$v" -gt "$best" ] && best=$v
        done
        eval "best_$input=$best"
    done
    for tool in $TOOLS; do
        rf=$(python3 -c "print(f'{${RES[file,$tool]}/max($best_file,1):.2f}x')")
        rp=$(python3 -c "print(f'{${RES[pipe,$tool]}/max($best_pipe,1):.2f}x')")
        echo "| $tool | ${RES[file,$tool]} | $rf | ${RES[pipe,$tool]} | $rp |"
    done
    echo "| iperf3 (limit) | $IPERF | | | |"
    echo
    echo "Command: \`bench/bulk.sh $DUPLEX\` (BULK_MIB=$MIB RUNS=$RUNS)"
} | tee "$OUT"
