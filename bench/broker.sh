#!/usr/bin/env bash
# bench/broker.sh DUPLEX: fan-out (broker) servers side by side under `duplex bench broker`.
#
# For every client count and server: a fresh server pinned to CPU 0, the load generator
# (DUPLEX bench broker, one process) pinned to CPU 1, WARMUP + SECS seconds of closed-loop
# rounds: one client sends SIZE bytes, every other client must receive them (every byte
# checked), then the next client sends. Prints a markdown table and saves it to
# bench/results/broker-DATE.md.
#
# Servers: duplex-broker (`duplex listen -k --broker --no-stdio`) and ncat-broker
# (`ncat -lk --broker -m 20000`). ncat waits with select(), so it cannot serve a
# descriptor >= FD_SETSIZE (1024): above about 1020 clients it is expected to fail; the
# table reports what happened (errors, clients that joined, the server's last words).
#
# Knobs (environment): BROKER_CONNS ("10 100 1000 2000"), BROKER_SERVERS
# ("duplex-broker ncat-broker"), BENCH_SECS (5), BENCH_WARMUP (1), BENCH_SIZE (64),
# BENCH_REPEAT (1: runs per point, the fastest kept), BENCH_OUT (output file).
set -u

if [ $# -ne 1 ] || [ ! -x "$1" ]; then
    echo "usage: $0 /path/to/duplex" >&2
    exit 2
fi
DUPLEX=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
HERE=$(cd "$(dirname "$0")" && pwd)
PY=${PYTHON:-/usr/bin/python3}
[ -x "$PY" ] || PY=python3

SECS=${BENCH_SECS:-5}
WARMUP=${BENCH_WARMUP:-1}
SIZE=${BENCH_SIZE:-64}
CONNS_LIST=${BROKER_CONNS:-"10 100 1000 2000"}
SERVERS=${BROKER_SERVERS:-"duplex-broker ncat-broker"}
REPEAT=${BENCH_REPEAT:-1}
SERVER_CPU=0
CLIENT_CPU=1

WORK=$(mktemp -d /tmp/duplex-broker.XXXXXX)
RAW=$WORK/raw.tsv # server conns rss0 rss said json
: > "$RAW"
PIDS=() # everything started here, killed by PID on exit
. "$HERE/lib.sh"

trap cleanup_work EXIT
trap 'exit 130' INT TERM

# start_server NAME: sets SPID and SPORT
start_server() {
    local name=$1 log=$WORK/server.log
    SPORT=
    : > "$log"
    case $name in
        duplex-broker)
            taskset -c $SERVER_CPU "$DUPLEX" listen -k --broker --no-stdio 127.0.0.1 0 \
                < /dev/null 2> "$log" & ;;
        ncat-broker)
            SPORT=$(free_port)
            taskset -c $SERVER_CPU ncat -lk --broker -m 20000 127.0.0.1 "$SPORT" \
                < /dev/null > /dev/null 2> "$log" & ;;
        *) echo "broker.sh: unknown server $name" >&2; return 1 ;;
    esac
    SPID=$!
    PIDS+=("$SPID")
    wait_server broker.sh "$name" "$log"
}

# run_load NAME CONNS: REPEAT runs of `duplex bench broker`, each against a fresh server;
# the one with the most deliveries/s is kept. The server's RSS is sampled while the load
# runs (the last sample is kept); what the server printed and whether it died are noted.
run_load() {
    local name=$1 conns=$2 out=$WORK/lg.out rep best_json= best_rate=-1 best_rss=0 best_rss0=0 best_said=
    for rep in $(seq "$REPEAT"); do
        local rss0 rss=0 lpid r json rate said
        start_server "$name" || { best_json='{"error":"server did not start"}'; break; }
        rss0=$(rss_tree "$SPID")
        # bounded: the connect phase gives up after 60 s (10 s without progress)
        timeout -s KILL $((SECS + WARMUP + 120)) taskset -c $CLIENT_CPU "$DUPLEX" bench broker \
            -c "$conns" -d "$SECS" -w "$WARMUP" -s "$SIZE" --json 127.0.0.1 "$SPORT" \
            > "$out" 2> "$WORK/lg.err" &
        lpid=$!
        PIDS+=("$lpid")
        while kill -0 "$lpid" 2>/dev/null; do
            r=$(rss_tree "$SPID")
            [ "${r:-0}" -gt 0 ] && rss=$r
            sleep 0.4
        done
        wait "$lpid" 2>/dev/null
        forget "$lpid"
        said=
        kill -0 "$SPID" 2>/dev/null || said="server exited during the run"
        kill_tree "$SPID"
        forget "$SPID"
        local words
        words=$(grep -v -e 'listening on' "$WORK/server.log" 2>/dev/null | head -2 | tr '\n|' '  ')
        [ -n "$words" ] && said="${said:+$said: }$words"
        [ -n "$said" ] && echo "   server: $said" >&2
        json=$(tail -1 "$out")
        [ -n "$json" ] || json='{"error":"duplex bench printed nothing"}'
        [ -s "$WORK/lg.err" ] && echo "   duplex bench: $(head -3 "$WORK/lg.err" | tr '\n' ' ')" >&2
        rate=$(printf '%s' "$json" | sed -n 's/.*"msgs_per_s":\([0-9.]*\).*/\1/p')
        echo "   $json rss=${rss}KiB" >&2
        if awk -v a="${rate:-0}" -v b="$best_rate" 'BEGIN { exit !(a > b) }'; then
            best_rate=${rate:-0}; best_json=$json; best_rss=$rss; best_rss0=$rss0; best_said=$said
        fi
    done
    [ -n "$best_json" ] || best_json='{"error":"no run"}'
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$conns" "$best_rss0" "$best_rss" "$best_said" \
        "$best_json" >> "$RAW"
}

START=$(date +%s)
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
echo "== broker: ${SIZE}-byte rounds, ${WARMUP}s warm-up + ${SECS}s per run" >&2
for conns in $CONNS_LIST; do
    for s in $SERVERS; do
        echo "-- $s, $conns clients" >&2
        run_load "$s" "$conns"
    done
done
ELAPSED=$(( $(date +%s) - START ))

DATE=$(date +%Y-%m-%d)
mkdir -p "$HERE/results"
OUT=${BENCH_OUT:-$HERE/results/broker-$DATE.md}
REV=$(git -C "$(dirname "$DUPLEX")/.." rev-parse --short HEAD 2>/dev/null || echo unknown)
CPU=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
CPU="$CPU; load average before the run: $LOAD0"

"$PY" - "$RAW" "$OUT" "$DATE" "$REV" "$CPU" "$(nproc)" "$(uname -r)" "$SECS" "$WARMUP" "$SIZE" \
    "$ELAPSED" "$REPEAT" <<'EOF' || { echo "broker.sh: no table: raw results follow" >&2; cat "$RAW" >&2; exit 1; }
import json, sys
raw, out, date, rev, cpu, ncpu, kernel, secs, warm, size, elapsed, repeat = sys.argv[1:]
rows = []
for line in open(raw):
    name, conns, rss0, rss, said, js = line.rstrip("\n").split("\t", 5)
    try:
        d = json.loads(js)
    except ValueError:
        d = {"error": js}
    d.update(name=name, conns=int(conns), rss0=int(rss0), rss=int(rss), said=said)
    rows.append(d)

def num(v):
    return "{:,}".format(int(round(v)))

L = []
L.append("# duplex broker (fan-out) benchmark, %s" % date)
L.append("")
L.append("duplex `%s`; %s CPUs (%s), Linux %s. Server pinned to CPU 0, the load generator "
         "(`duplex bench broker`, one process) to CPU 1; a fresh server for every run. Closed loop, "
         "one message in flight in the whole run: in round r client r %% N sends %s bytes, and the "
         "round is over when each of the other N−1 clients has received all of them (every byte "
         "checked); latency is that of a round (send to the last byte at the last receiver). "
         "Deliveries/s = rounds/s × (N−1). %ss warm-up then %ss measured; runs per point: %s (the "
         "fastest kept). Whole run: %ss."
         % (rev, ncpu, cpu, kernel, size, warm, secs, repeat, elapsed))
L.append("")
L.append("Servers: `duplex listen -k --broker --no-stdio 127.0.0.1 0` and `ncat -lk --broker -m 20000 "
         "127.0.0.1 PORT`. ncat waits with select(), which cannot watch a descriptor at or above "
         "FD_SETSIZE (1024), so it is expected to fail above about 1020 clients; the table shows "
         "what happened rather than leaving those rows out.")
L.append("")
L.append("| clients | server | deliveries/s | vs ncat | rounds/s | p50 µs | p99 µs | server RSS KiB | errors |")
L.append("|---:|---|---:|---:|---:|---:|---:|---:|---|")
for c in sorted({r["conns"] for r in rows}):
    rs = [r for r in rows if r["conns"] == c]
    nc = [r for r in rs if r["name"] == "ncat-broker" and "error" not in r]
    base = nc[0]["msgs_per_s"] if nc else 0
    for r in rs:
        notes = []
        if r.get("established", c) < c:
            notes.append("%s/%d joined" % (r.get("established"), c))
        if r.get("stalled"):
            notes.append("%d stalled" % r["stalled"])
        if r.get("verify_errors"):
            notes.append("%d wrong bytes" % r["verify_errors"])
        if r["said"]:
            notes.append(r["said"].strip())
        if "error" in r:
            L.append("| %d | %s | – | – | – | – | – | – | %s |" % (c, r["name"], "; ".join([r["error"]] + notes)))
            continue
        err = str(r["errors"]) + (" (%s)" % "; ".join(notes) if notes else "")
        ratio = "%.2f×" % (r["msgs_per_s"] / base) if base else "–"
        L.append("| %d | %s | %s | %s | %s | %.0f | %.0f | %s | %s |" % (
            c, r["name"], num(r["msgs_per_s"]), ratio, num(r["rounds_per_s"]), r["p50_us"],
            r["p99_us"], num(r["rss"]), err))
L.append("")
L.append("*vs ncat*: deliveries/s ÷ ncat's at the same client count (– when ncat has no result). "
         "*server RSS*: VmRSS sampled while the load ran. *errors*: clients that failed to connect, "
         "were closed by the server, never received anything (not joined), or were still waiting "
         "for the last round at the end (stalled); failed connects are retried during the connect "
         "phase and each attempt counts.")

text = "\n".join(L) + "\n"
open(out, "w").write(text)
sys.stdout.write(text)
EOF
echo "saved: $OUT" >&2
exit 0
