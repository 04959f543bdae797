#!/usr/bin/env bash
# bench/tls.sh DUPLEX: TLS in front of a plain server (TLS termination), duplex relay --ssl
# against socat (OPENSSL-LISTEN, fork), stunnel4 and ncat (--ssl --sh-exec "ncat ..."), side
# by side in one run:
#  - throughput: `duplex connect --ssl` sends SIZE MiB through the terminator to a plain sink
#    (the same client for every terminator; MiB/s, median of RUNS)
#  - memory: IDLE clients hold a finished TLS handshake each (a Python script); the
#    terminator's PSS growth per client (its processes summed: socat forks one per client)
#  - echo over TLS: duplex listen -k --echo --ssl against ncat --ssl --exec cat and socat
#    OPENSSL-LISTEN,fork EXEC:cat, with `duplex bench echo --ssl` (and connrate: TLS connects/s);
#    ECHO_RUNS rounds, each server once per round in turn (load that drifts during the run falls
#    on all of them), medians; with the server's CPU time per message (what load on a shared
#    machine moves least)
# Writes bench/results/tls-<date>.md (or OUT). Environment: RUNS (3), ECHO_RUNS (RUNS), SIZE (MiB, 1024),
# IDLE (500: ncat stops at select()'s 1024 descriptors, two per client).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
DUPLEX=$(realpath "$1")
RUNS=${RUNS:-3}
SIZE=${SIZE:-1024}
IDLE=${IDLE:-500}
OUT=${OUT:-"$HERE/results/tls-$(date +%F).md"}
WORK=$(mktemp -d)
PIDS=()
. "$HERE/lib.sh"
trap cleanup_work EXIT
mkdir -p "$HERE/results"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$WORK/k.pem" \
    -out "$WORK/c.pem" -days 1 -subj /CN=localhost 2>/dev/null

pss_tree() { # PID -> PSS in KiB of it and its descendants
    local p t=0 v
    for p in "$1" $(descendants "$1"); do
        v=$(awk '/^Pss:/ { print $2 }' "/proc/$p/smaps_rollup" 2>/dev/null)
        t=$((t + ${v:-0}))
    done
    echo "$t"
}

start_terminator() { # KIND PORT TARGET_PORT: sets TPID
    case $1 in
        duplex) "$DUPLEX" relay -k --ssl --ssl-cert "$WORK/c.pem" --ssl-key "$WORK/k.pem" \
                    "127.0.0.1:$2" "127.0.0.1:$3" 2>/dev/null & ;;
        socat) socat "OPENSSL-LISTEN:$2,bind=127.0.0.1,reuseaddr,fork,cert=$WORK/c.pem,key=$WORK/k.pem,verify=0" \
                   "TCP:127.0.0.1:$3" 2>/dev/null & ;;
        stunnel)
            cat > "$WORK/stunnel.conf" <<EOF
foreground = yes
pid =
[t]
accept = 127.0.0.1:$2
connect = 127.0.0.1:$3
cert = $WORK/c.pem
key = $WORK/k.pem
EOF
            stunnel4 "$WORK/stunnel.conf" > /dev/null 2>&1 & ;;
        ncat) ncat --ssl --ssl-cert "$WORK/c.pem" --ssl-key "$WORK/k.pem" -l -k -m 2000 \
                  127.0.0.1 "$2" --sh-exec "ncat 127.0.0.1 $3" 2>/dev/null & ;;
    esac
    TPID=$!
    PIDS+=("$TPID")
    wait_listen "$2"
}

stop() { kill_tree "$1"; forget "$1"; }

start_sink_and_terminator() { # KIND: a plain sink, KIND in front of it; sets SPID TPID TPORT
    local sink
    sink=$(free_port)
    "$DUPLEX" listen -k --recv-only 127.0.0.1 "$sink" > /dev/null 2>&1 < /dev/null &
    SPID=$!
    PIDS+=("$SPID")
    wait_listen "$sink"
    TPORT=$(free_port)
    start_terminator "$1" "$TPORT" "$sink"
}

throughput() { # KIND -> MiB/s
    local t0 t1 rc
    start_sink_and_terminator "$1"
    t0=$(date +%s%N)
    head -c "${SIZE}M" /dev/zero |
        timeout 300 "$DUPLEX" connect --ssl --ssl-no-verify 127.0.0.1 "$TPORT" > /dev/null 2>"$WORK/client.err"
    rc=$?
    t1=$(date +%s%N)
    stop "$TPID"
    stop "$SPID"
    # socat and stunnel may end without close_notify (exit 1, not a loss here: the
    # sink counts nothing, the time to send is what is measured)
    if [ $rc -gt 1 ]; then
        echo "tls.sh: $1: client failed ($rc): $(cat "$WORK/client.err")" >&2
        echo 0
        return
    fi
    echo $(( SIZE * 1000000000 / (t1 - t0) ))
}

idle_memory() { # KIND -> "PSS-per-client-KiB held"
    local before after held
    start_sink_and_terminator "$1"
    sleep 0.3
    before=$(pss_tree "$TPID")
    python3 - "$TPORT" "$IDLE" "$WORK/held" <<'EOF' &
import socket, ssl, sys, time
port, n, flag = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
held = []
for _ in range(n):
    try:
        s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10))
        s.sendall(b"x")  # through the terminator: its connection to the sink is open too
        held.append(s)
    except OSError:
        break
open(flag, "w").write(str(len(held)))
time.sleep(120)
EOF
    local hpid=$!
    PIDS+=("$hpid")
    for _ in $(seq 600); do [ -s "$WORK/held" ] && break; sleep 0.1; done
    sleep 1
    held=$(cat "$WORK/held" 2>/dev/null || echo 0)
    after=$(pss_tree "$TPID")
    stop "$hpid"
    rm -f "$WORK/held"
    stop "$TPID"
    stop "$SPID"
    if [ "${held:-0}" -gt 0 ]; then
        echo "$(( (after - before) / held )) $held"
    else
        echo "- 0"
    fi
}

KINDS=${KINDS:-"duplex socat stunnel ncat"}
command -v stunnel4 > /dev/null || KINDS=${KINDS/stunnel/}
command -v socat > /dev/null || KINDS=${KINDS/socat/}
command -v ncat > /dev/null || KINDS=${KINDS/ncat/}

# Echo over TLS, 64-byte messages, `duplex bench echo --ssl` (client CPU 1, server CPU 0) against
# duplex listen -k --echo --ssl and the forking peers (ncat --ssl --exec cat, socat
# OPENSSL-LISTEN,fork EXEC:cat); then full TLS connects per second (connrate: connect,
# handshake, one byte echoed, close).
ECHO_CONNS=${ECHO_CONNS:-"10 100 500"}
ECHO_SECS=${ECHO_SECS:-3}
start_echo() { # KIND PORT: sets TPID
    case $1 in
        duplex) taskset -c 0 "$DUPLEX" listen -k --echo --no-stdio --ssl --ssl-cert "$WORK/c.pem" \
                    --ssl-key "$WORK/k.pem" 127.0.0.1 "$2" 2>/dev/null & ;;
        ncat) taskset -c 0 ncat --ssl --ssl-cert "$WORK/c.pem" --ssl-key "$WORK/k.pem" -l -k \
                  -m 2000 --exec /bin/cat 127.0.0.1 "$2" 2>/dev/null & ;;
        socat) taskset -c 0 socat "OPENSSL-LISTEN:$2,bind=127.0.0.1,reuseaddr,fork,backlog=4096,cert=$WORK/c.pem,key=$WORK/k.pem,verify=0" \
                   EXEC:cat 2>/dev/null & ;;
        anchor_tls) taskset -c 0 "$HERE/build/anchor_tls" "$WORK/c.pem" "$WORK/k.pem" "$2" 2>/dev/null & ;;
    esac
    TPID=$!
    PIDS+=("$TPID")
    wait_listen "$2"
}
bench_json() { # MODE CONNS PORT -> "msgs/s p99-us server-CPU-us-per-msg" (TPID: the server)
    local c0 c1
    c0=$(cpu_tree "$TPID")
    taskset -c 1 "$DUPLEX" bench "$1" --ssl -c "$2" -d "$ECHO_SECS" -w 1 --json 127.0.0.1 "$3" \
        2>/dev/null > "$WORK/bench.json"
    c1=$(cpu_tree "$TPID")
    # CPU over the client's whole run (handshakes and warm-up too) / the messages of warm-up
    # and window at the measured rate
    python3 -c 'import json, sys
try:
    d = json.load(open(sys.argv[1])); r = d["msgs_per_s"]
    ticks, hz, secs = int(sys.argv[3]) - int(sys.argv[2]), int(sys.argv[4]), float(sys.argv[5]) + 1
    print(round(r), round(d["p99_us"]), "%.1f" % (ticks * 1e6 / hz / (r * secs)) if r > 0 else "-")
except Exception:
    print("0 - -")' "$WORK/bench.json" "$c0" "$c1" "$(getconf CLK_TCK)" "$ECHO_SECS"
}
# anchor_tls (bench/anchor_tls.c, `make -C bench`): OpenSSL on epoll by hand, no bridge: the floor
ECHO_KINDS=${ECHO_KINDS:-"duplex anchor_tls ncat socat"}
[ -x "$HERE/build/anchor_tls" ] || ECHO_KINDS=${ECHO_KINDS/anchor_tls/}
ECHO_RUNS=${ECHO_RUNS:-$RUNS}
kinds=
for k in $ECHO_KINDS; do
    command -v "$k" > /dev/null || [ "$k" = duplex ] || [ "$k" = anchor_tls ] || continue
    kinds="$kinds $k"
done
ECHO_KINDS=$kinds
declare -A ECHO CONNRATE RUNS_OF
for n in $ECHO_CONNS; do
    for r in $(seq "$ECHO_RUNS"); do
        for k in $ECHO_KINDS; do
            port=$(free_port)
            start_echo "$k" "$port"
            one=$(bench_json echo "$n" "$port")
            stop "$TPID"
            RUNS_OF[$k,$n]="${RUNS_OF[$k,$n]:-} ${one// //}" # msgs/p99/cpu
            echo "tls.sh: echo $k $n (round $r): $one" >&2
        done
    done
    for k in $ECHO_KINDS; do # medians of each column
        m=() p=() c=()
        for t in ${RUNS_OF[$k,$n]}; do
            IFS=/ read -r a b d <<< "$t"
            m+=("$a") p+=("$b") c+=("$d")
        done
        ECHO[$k,$n]="$(median "${m[@]}") $(median "${p[@]}") $(median "${c[@]}")"
    done
done
for k in $ECHO_KINDS; do
    port=$(free_port)
    start_echo "$k" "$port"
    CONNRATE[$k]=$(bench_json connrate 20 "$port")
    stop "$TPID"
    echo "tls.sh: connrate $k: ${CONNRATE[$k]}" >&2
done

declare -A TP MEM
for k in $KINDS; do
    runs=()
    for _ in $(seq "$RUNS"); do runs+=("$(throughput "$k")"); done
    TP[$k]=$(median "${runs[@]}")
    MEM[$k]=$(idle_memory "$k")
    echo "tls.sh: $k: ${TP[$k]} MiB/s (runs: ${runs[*]}), idle: ${MEM[$k]}" >&2
done

{
    echo "# TLS termination, $(date +%F) ($(nproc) cores, $(uname -r))"
    echo
    echo "\`bench/tls.sh\`: \`duplex connect --ssl\` sends $SIZE MiB through each terminator to a plain"
    echo "\`duplex listen\` sink (median of $RUNS runs); then $IDLE idle TLS clients (Python) and the"
    echo "terminator's PSS per client (all of its processes). $(openssl version)."
    echo
    echo "| terminator | MiB/s | vs duplex | PSS per idle client (KiB) | clients held |"
    echo "|---|---:|---:|---:|---:|"
    for k in $KINDS; do
        set -- ${MEM[$k]}
        ratio=$(awk -v a="${TP[$k]}" -v b="${TP[duplex]}" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }')
        echo "| $k | ${TP[$k]} | $ratio | $1 | $2 |"
    done
    echo
    echo "Echo over TLS, 64-byte messages: \`duplex bench echo --ssl\` on CPU 1, the server on CPU 0,"
    echo "${ECHO_SECS} s after 1 s of warm-up; medians of $ECHO_RUNS rounds (each server once per round, in"
    echo "turn): messages/s (ratio to duplex) [p99 µs] {server CPU µs per message, handshakes included}."
    echo "Connects/s: \`duplex bench connrate --ssl -c 20\` (connect, TLS handshake, one byte echoed, close)."
    echo
    printf "| server |"; for n in $ECHO_CONNS; do printf " %s conns |" "$n"; done; echo " TLS connects/s |"
    printf "|---|"; for n in $ECHO_CONNS; do printf -- "---:|"; done; echo "---:|"
    for k in $ECHO_KINDS; do
        [ -n "${CONNRATE[$k]:-}" ] || continue
        printf "| %s |" "$k"
        for n in $ECHO_CONNS; do
            set -- ${ECHO[$k,$n]}
            ratio=$(awk -v a="$1" -v b="$(echo ${ECHO[duplex,$n]} | cut -d' ' -f1)" 'BEGIN { if (b > 0) printf " (%.2fx)", a / b }')
            printf " %s%s [%s] {%s} |" "$1" "$ratio" "$2" "$3"
        done
        set -- ${CONNRATE[$k]}
        echo " $1 |"
    done
    echo
    echo "Each round (messages/s / p99 µs / server CPU µs per message):"
    echo
    for n in $ECHO_CONNS; do
        for k in $ECHO_KINDS; do echo "- $n conns, $k:${RUNS_OF[$k,$n]}"; done
    done
} | tee "$OUT"
