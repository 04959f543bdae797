#!/usr/bin/env bash
# bench/echo.sh DUPLEX: echo servers side by side under `duplex bench` (DUPLEX itself).
#
# For every server and every connection count: a fresh server pinned to CPU 0,
# the load generator (DUPLEX bench) pinned to CPU 1, WARMUP + SECS seconds of closed-loop
# 64-byte echo; then connect/close rate; then server memory with IDLE_CONNS idle
# connections. Prints a markdown table and saves it to bench/results/echo-DATE.md.
#
# Knobs (environment): BENCH_SECS (5), BENCH_WARMUP (1), BENCH_CONNS ("1 100 1000 10000"),
# BENCH_IDLE_CONNS (10000), BENCH_SIZE (64), BENCH_SERVERS (all, see below),
# BENCH_CONNRATE_CONNS (100; 0 skips the connect-rate test), BENCH_REPEAT (1: runs per
# point, the fastest kept), BENCH_OUT (output file).
set -u

if [ $# -ne 1 ] || [ ! -x "$1" ]; then
    echo "usage: $0 /path/to/duplex" >&2
    exit 2
fi
DUPLEX=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
HERE=$(cd "$(dirname "$0")" && pwd)
B=$HERE/build
PY=${PYTHON:-/usr/bin/python3}
[ -x "$PY" ] || PY=python3

SECS=${BENCH_SECS:-5}
WARMUP=${BENCH_WARMUP:-1}
SIZE=${BENCH_SIZE:-64}
CONNS_LIST=${BENCH_CONNS:-"1 100 1000 10000"}
IDLE_CONNS=${BENCH_IDLE_CONNS:-10000}
CONNRATE_CONNS=${BENCH_CONNRATE_CONNS:-100}
SERVERS=${BENCH_SERVERS:-"duplex-epoll duplex-poll duplex-io_uring duplex-threads2 duplex-fork duplex-thread anchor_epoll anchor_libuv anchor_libevent ncat socat"}
FORKING_MAX=1000 # ncat and socat fork per connection: not run above this many connections
REPEAT=${BENCH_REPEAT:-1}
SERVER_CPU=0
CLIENT_CPU=1

for s in $SERVERS; do # the anchors asked for (libuv's and libevent's need their -dev packages)
    case $s in anchor_*) [ -x "$B/$s" ] || { echo "echo.sh: $B/$s missing: run make -C bench" >&2; exit 2; } ;; esac
done

WORK=$(mktemp -d /tmp/duplex-bench.XXXXXX)
RAW=$WORK/raw.tsv # kind server conns rss0 rss json
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
        duplex-epoll|duplex-poll|duplex-io_uring)
            taskset -c $SERVER_CPU "$DUPLEX" listen -k --echo --no-stdio --backend "${name#duplex-}" \
                127.0.0.1 0 2> "$log" & ;;
        duplex-fork|duplex-thread) # the per-client models (S1.4)
            taskset -c $SERVER_CPU "$DUPLEX" listen -k --echo --no-stdio --model "${name#duplex-}" \
                127.0.0.1 0 2> "$log" & ;;
        duplex-threads2) # two event loops on both cores (the load generator shares core 1)
            "$DUPLEX" listen -k --echo --no-stdio --threads 2 127.0.0.1 0 2> "$log" & ;;
        anchor_*)
            taskset -c $SERVER_CPU "$B/$name" 0 2> "$log" & ;;
        ncat)
            SPORT=$(free_port)
            taskset -c $SERVER_CPU ncat -lk -m 20000 --exec /bin/cat 127.0.0.1 "$SPORT" 2> "$log" & ;;
        socat)
            SPORT=$(free_port)
            taskset -c $SERVER_CPU socat "TCP-LISTEN:$SPORT,bind=127.0.0.1,fork,reuseaddr,backlog=4096" \
                EXEC:cat 2> "$log" & ;;
        *) echo "echo.sh: unknown server $name" >&2; return 1 ;;
    esac
    SPID=$!
    PIDS+=("$SPID")
    wait_server echo.sh "$name" "$log"
}

stop_server() {
    kill_tree "$SPID"
    forget "$SPID"
    # (socat's complaints about the children this script killed are not news)
    local said
    said=$(grep -v -e 'listening on' -e 'exited on signal 15' "$WORK/server.log" 2>/dev/null | head -3 | tr '\n' ' ')
    [ -n "$said" ] && echo "   server said: $said" >&2
    return 0
}

# run_load KIND NAME CONNS BENCH-ARGS...: REPEAT `duplex bench` runs, each against a fresh
# server; the one with the most msgs/s is kept (the others were disturbed more by
# whatever else ran on the machine). The server's RSS is sampled while the load runs;
# the last sample is "RSS at the end". Server CPU % is over the load generator's whole life.
run_load() {
    local kind=$1 name=$2 conns=$3 out=$WORK/lg.out rep best_json= best_rate=-1 best_rss=0 best_rss0=0 best_cpu=0
    shift 3
    for rep in $(seq "$REPEAT"); do
        local rss0 rss=0 lpid r c0 c1=0 t0 t1 json rate cpu
        start_server "$name" || { best_json='{"error":"server did not start"}'; break; }
        rss0=$(rss_tree "$SPID")
        c0=$(cpu_tree "$SPID"); t0=$(date +%s.%N)
        taskset -c $CLIENT_CPU "$DUPLEX" bench "$@" --json 127.0.0.1 "$SPORT" > "$out" 2> "$WORK/lg.err" &
        lpid=$!
        PIDS+=("$lpid")
        while kill -0 "$lpid" 2>/dev/null; do
            r=$(rss_tree "$SPID")
            [ "${r:-0}" -gt 0 ] && rss=$r
            c1=$(cpu_tree "$SPID"); t1=$(date +%s.%N)
            sleep 0.4
        done
        wait "$lpid" 2>/dev/null
        forget "$lpid"
        kill -0 "$SPID" 2>/dev/null || echo "   !! $name exited during the run" >&2
        stop_server
        json=$(tail -1 "$out")
        [ -n "$json" ] || json='{"error":"duplex bench printed nothing"}'
        [ -s "$WORK/lg.err" ] && echo "   duplex bench: $(head -3 "$WORK/lg.err" | tr '\n' ' ')" >&2
        cpu=$(awk -v a="$c0" -v b="$c1" -v s="$t0" -v e="${t1:-$t0}" -v hz="$(getconf CLK_TCK)" \
            'BEGIN { d = e - s; v = 0; if (d > 0) v = 100 * (b - a) / hz / d; printf "%.0f", v }')
        rate=$(printf '%s' "$json" | sed -n 's/.*"msgs_per_s":\([0-9.]*\).*/\1/p')
        echo "   $json rss=${rss}KiB cpu=${cpu}%" >&2
        if awk -v a="${rate:-0}" -v b="$best_rate" 'BEGIN { exit !(a > b) }'; then
            best_rate=${rate:-0}; best_json=$json; best_rss=$rss; best_rss0=$rss0; best_cpu=$cpu
        fi
    done
    best_json="${best_json%\}},\"server_cpu_pct\":$best_cpu}"
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$kind" "$name" "$conns" "$best_rss0" "$best_rss" "$best_json" >> "$RAW"
}

# run_idle NAME CONNS [-e]: RSS before and while CONNS idle connections are held.
run_idle() {
    local name=$1 conns=$2 extra=${3:-} out=$WORK/idle.out rss0 rss lpid i kind=idle
    [ -n "$extra" ] && kind=idle-echoed
    start_server "$name" || return
    rss0=$(rss_tree "$SPID")
    : > "$out"
    taskset -c $CLIENT_CPU "$DUPLEX" bench idle -c "$conns" -d 0 $extra -s "$SIZE" --json 127.0.0.1 "$SPORT" > "$out" 2> "$WORK/lg.err" &
    lpid=$!
    PIDS+=("$lpid")
    for i in $(seq 600); do
        [ -s "$out" ] && break
        kill -0 "$lpid" 2>/dev/null || break
        sleep 0.1
    done
    sleep 1 # let the server finish accepting
    rss=$(rss_tree "$SPID")
    kill -0 "$SPID" 2>/dev/null || echo "   !! $name exited with $conns idle connections" >&2
    kill_tree "$lpid"
    forget "$lpid"
    stop_server
    local json
    json=$(tail -1 "$out")
    [ -n "$json" ] || json='{"error":"duplex bench printed nothing"}'
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$kind" "$name" "$conns" "$rss0" "$rss" "$json" >> "$RAW"
    echo "   $kind: rss ${rss0} -> ${rss} KiB  $json" >&2
}

is_forking() { case $1 in ncat|socat|duplex-fork|duplex-thread) return 0 ;; esac; return 1; }

START=$(date +%s)
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
echo "== echo: ${SIZE}-byte messages, ${WARMUP}s warm-up + ${SECS}s per run" >&2
for conns in $CONNS_LIST; do
    for s in $SERVERS; do
        if is_forking "$s" && [ "$conns" -gt $FORKING_MAX ]; then continue; fi
        echo "-- $s, $conns connections" >&2
        run_load echo "$s" "$conns" echo -c "$conns" -d "$SECS" -w "$WARMUP" -s "$SIZE"
    done
done

if [ "$CONNRATE_CONNS" -gt 0 ]; then
    echo "== connrate: $CONNRATE_CONNS concurrent connect/1-byte echo/close loops" >&2
    for s in $SERVERS; do
        echo "-- $s" >&2
        run_load connrate "$s" "$CONNRATE_CONNS" connrate -c "$CONNRATE_CONNS" -d 3 -w 1
    done
fi

if [ "$IDLE_CONNS" -gt 0 ]; then
    echo "== idle: $IDLE_CONNS connections held open" >&2
    for s in $SERVERS; do
        is_forking "$s" && continue # a process (socat: two) per connection
        echo "-- $s" >&2
        run_idle "$s" "$IDLE_CONNS"
        run_idle "$s" "$IDLE_CONNS" -e
    done
fi
ELAPSED=$(( $(date +%s) - START ))

DATE=$(date +%Y-%m-%d)
mkdir -p "$HERE/results"
OUT=${BENCH_OUT:-$HERE/results/echo-$DATE.md}
REV=$(git -C "$(dirname "$DUPLEX")/.." rev-parse --short HEAD 2>/dev/null || echo unknown)
CPU=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
CPU="$CPU; load average before the run: $LOAD0" 

"$PY" - "$RAW" "$OUT" "$DATE" "$REV" "$CPU" "$(nproc)" "$(uname -r)" "$SECS" "$WARMUP" "$SIZE" \
    "$FORKING_MAX" "$IDLE_CONNS" "$ELAPSED" "$CONNRATE_CONNS" "$REPEAT" <<'EOF' || { echo "echo.sh: no table: raw results follow" >&2; cat "$RAW" >&2; exit 1; }
import json, sys
raw, out, date, rev, cpu, ncpu, kernel, secs, warm, size, fmax, idle_n, elapsed, cr_n, repeat = sys.argv[1:]
ANCHORS = ("anchor_epoll", "anchor_libuv", "anchor_libevent")
rows = []
for line in open(raw):
    kind, name, conns, rss0, rss, js = line.rstrip("\n").split("\t", 5)
    try:
        d = json.loads(js)
    except ValueError:
        d = {"error": js}
    d.update(kind=kind, name=name, conns=int(conns), rss0=int(rss0), rss=int(rss))
    rows.append(d)

def ratio(v, best):
    return "%.2f×" % (v / best) if best else "–"

def num(v):
    return "{:,}".format(int(round(v)))

L = []
L.append("# duplex echo benchmark, %s" % date)
L.append("")
L.append("duplex `%s`; %s CPUs (%s), Linux %s. Server pinned to CPU 0, the load generator "
         "(`duplex bench`) to CPU 1 (one process). Every run uses a fresh server. Echo: %s-byte messages, closed loop "
         "(each connection has one message in flight), %ss warm-up then %ss measured. "
         "Ratios are to the best of the three anchors (anchor_epoll, anchor_libuv, anchor_libevent) "
         "at the same connection count: msgs/s ÷ best anchor msgs/s (higher is better), p99 ÷ lowest "
         "anchor p99 and RSS ÷ lowest anchor RSS (lower is better). ncat and socat fork per "
         "connection, so they are run at %s connections at most; their RSS is the sum over the "
         "listener and all its children (shared pages counted again in each). Server CPU %%: CPU "
         "time of the server (and its children) ÷ wall time over the whole load generator run (connect, "
         "warm-up, measure); near 100 means the server was the bottleneck, well below means the "
         "load generator (one core) or cross-CPU wake-ups were. Runs per point: %s (the fastest kept). "
         "Whole run: %ss."
         % (rev, ncpu, cpu, kernel, size, warm, secs, fmax, repeat, elapsed))
L.append("")
L.append("## Echo throughput and latency")
L.append("")
L.append("| conns | server | msgs/s | vs best anchor | p50 µs | p99 µs | p99 vs best anchor | server CPU % | RSS KiB at end | errors |")
L.append("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
echo = [r for r in rows if r["kind"] == "echo"]
for c in sorted({r["conns"] for r in echo}):
    rs = [r for r in echo if r["conns"] == c]
    an = [r for r in rs if r["name"] in ANCHORS and "error" not in r]
    best = max((r["msgs_per_s"] for r in an), default=0)
    bp99 = min((r["p99_us"] for r in an if r["p99_us"] > 0), default=0)
    for r in rs:
        if "error" in r:
            L.append("| %d | %s | – | – | – | – | – | – | – | %s |" % (c, r["name"], r["error"]))
            continue
        err = r["errors"]
        if r.get("established", c) < c:
            err = "%s (%s/%d connected)" % (err, r.get("established"), c)
        L.append("| %d | %s | %s | %s | %.0f | %.0f | %s | %s | %s | %s |" % (
            c, r["name"], num(r["msgs_per_s"]), ratio(r["msgs_per_s"], best), r["p50_us"],
            r["p99_us"], ratio(r["p99_us"], bp99), r.get("server_cpu_pct", "–"), num(r["rss"]), err))

cr = [r for r in rows if r["kind"] == "connrate"]
if cr:
    L.append("")
    L.append("## Connection rate (%s concurrent connect, 1-byte echo, close loops; 3 s)" % cr_n)
    L.append("")
    L.append("| server | conns/s | vs best anchor | p50 µs | p99 µs | server CPU % | errors |")
    L.append("|---|---:|---:|---:|---:|---:|---:|")
    best = max((r["msgs_per_s"] for r in cr if r["name"] in ANCHORS and "error" not in r), default=0)
    for r in cr:
        if "error" in r:
            L.append("| %s | – | – | – | – | – | %s |" % (r["name"], r["error"]))
            continue
        L.append("| %s | %s | %s | %.0f | %.0f | %s | %s |" % (
            r["name"], num(r["msgs_per_s"]), ratio(r["msgs_per_s"], best), r["p50_us"],
            r["p99_us"], r.get("server_cpu_pct", "–"), r["errors"]))

idle = {}
for r in rows:
    if r["kind"] in ("idle", "idle-echoed"):
        idle.setdefault(r["name"], {})[r["kind"]] = r
if idle:
    L.append("")
    L.append("## Memory per idle connection (%s connections)" % idle_n)
    L.append("")
    L.append("KiB/conn = (server RSS with the connections open − RSS with none) ÷ connections. "
             "*fresh*: connected, nothing sent; *after one echo*: each connection first echoes one "
             "%s-byte message, then stays idle (shows whether buffers are kept after use)." % size)
    L.append("")
    L.append("| server | RSS KiB, 0 conns | RSS KiB, fresh | KiB/conn fresh | vs best anchor | RSS KiB, after one echo | KiB/conn after one echo | vs best anchor |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    def per(r):
        est = r.get("established", 0) or 0
        return (r["rss"] - r["rss0"]) / est if est else None
    bests = {}
    for k in ("idle", "idle-echoed"):
        vals = [per(d[k]) for n, d in idle.items() if n in ANCHORS and k in d and per(d[k]) is not None]
        bests[k] = min(vals) if vals else 0
    for n, d in idle.items():
        cells = []
        for k in ("idle", "idle-echoed"):
            r = d.get(k)
            p = per(r) if r else None
            if r is None or p is None:
                cells.append(["–", "–", "–", "–"])
                continue
            est = r.get("established", 0)
            note = "" if est >= int(idle_n) else " (%s connected)" % est
            vs = ratio(p, bests[k]) if bests[k] >= 0.1 else "%+.2f KiB" % (p - bests[k])
            cells.append([num(r["rss0"]), num(r["rss"]) + note, "%.2f" % p, vs])
        L.append("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
            n, cells[0][0], cells[0][1], cells[0][2], cells[0][3], cells[1][1], cells[1][2], cells[1][3]))
    L.append("")
    L.append("Not run for ncat and socat: they fork a process (two for socat) per connection.")

text = "\n".join(L) + "\n"
open(out, "w").write(text)
sys.stdout.write(text)
EOF
echo "saved: $OUT" >&2
exit 0
