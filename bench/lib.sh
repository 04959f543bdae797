# bench/lib.sh: helpers shared by the benchmark scripts (sourced, not run).
# Processes a script starts go in its PIDS array; kill_tree stops one with
# everything it forked (forking servers), by PID.

descendants() { # PID -> its descendants (one pass over the process table)
    ps -e -o pid=,ppid= | awk -v root="$1" '
        { kids[$2] = kids[$2] " " $1 }
        END { n = split(kids[root], q, " "); i = 1
              while (i <= n) { p = q[i++]; print p; m = split(kids[p], k, " ")
                               for (j = 1; j <= m; j++) q[++n] = k[j] } }'
}

kill_tree() { # PID: stop it and everything it forked
    local pid=$1 all p
    all="$pid $(descendants "$pid")"
    for p in $all; do kill -TERM "$p" 2>/dev/null; done
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        local alive=0
        for p in $all; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ $alive = 0 ] && break
        sleep 0.1
    done
    for p in $all; do kill -KILL "$p" 2>/dev/null; done
    wait "$pid" 2>/dev/null
    return 0
}

forget() { # PID: no longer ours to kill
    local p keep=()
    for p in "${PIDS[@]}"; do [ "$p" != "$1" ] && keep+=("$p"); done
    PIDS=("${keep[@]}")
}

rss_tree() { # PID -> VmRSS in KiB of it and its descendants (forking servers: summed)
    ps -e -o pid=,ppid=,rss= | awk -v root="$1" '
        { kids[$2] = kids[$2] " " $1; rss[$1] = $3 }
        END { q[1] = root; n = 1; i = 1; t = 0
              while (i <= n) { p = q[i++]; t += rss[p]; m = split(kids[p], k, " ")
                               for (j = 1; j <= m; j++) q[++n] = k[j] }
              print t }'
}

cpu_tree() { # PID -> CPU clock ticks (user+system) used by it and its live descendants
    local f=() p
    for p in "$1" $(descendants "$1"); do f+=("/proc/$p/stat"); done
    cat "${f[@]}" 2>/dev/null | awk '{ sub(/^.*\) /, ""); t += $12 + $13 } END { print t + 0 }'
}

free_port() { # a TCP port on 127.0.0.1 that was free a moment ago
    "${PY:-python3}" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_listen() { # PORT: until something listens on it (asked of ss, not by connecting)
    for _ in $(seq 100); do
        ss -Hltn "sport = :$1" | grep -q . && return 0
        sleep 0.05
    done
    return 1
}

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

cleanup_work() { # the EXIT trap: every process in PIDS (with what it forked), then $WORK
    local p
    for p in "${PIDS[@]}"; do kill_tree "$p"; done
    PIDS=()
    rm -rf "$WORK"
}

logged_port() { # LOG -> PORT of its "listening on 127.0.0.1:PORT" line (duplex -v), or nothing
    sed -n 's/.*listening on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$1" | head -1
}

start_echo_target() { # LOG: a `$DUPLEX listen -k --echo` on 127.0.0.1 (its PID into PIDS);
                      # sets ECHO_PORT, or fails saying why
    "$DUPLEX" listen -k --echo 127.0.0.1 0 2> "$1" &
    PIDS+=($!)
    for _ in $(seq 100); do
        ECHO_PORT=$(logged_port "$1")
        [ -n "$ECHO_PORT" ] && return 0
        sleep 0.05
    done
    echo "echo target did not start: $(cat "$1")" >&2
    return 1
}

wait_server() { # SCRIPT NAME LOG: until server SPID listens; SPORT set beforehand is checked
                # with ss, otherwise read from its "listening on 127.0.0.1:PORT" line in LOG
    local script=$1 name=$2 log=$3 fixed=$SPORT ready=0
    for _ in $(seq 100); do
        kill -0 "$SPID" 2>/dev/null || break
        if [ -n "$fixed" ]; then
            ss -Hltn "sport = :$fixed" 2>/dev/null | grep -q . && ready=1
        else
            SPORT=$(logged_port "$log")
            [ -n "$SPORT" ] && ready=1
        fi
        [ $ready = 1 ] && break
        sleep 0.05
    done
    if [ $ready = 0 ] || ! kill -0 "$SPID" 2>/dev/null; then
        echo "$script: $name did not start:" >&2
        cat "$log" >&2
        return 1
    fi
    sleep 0.2 # let it settle before the baseline RSS
}
