#!/usr/bin/env bash
# bench/tls_ab.sh BEFORE AFTER: two builds of duplex side by side, interleaved round by round
# (a shared machine's load drifts: only figures of the same round compare), with socat and ncat
# in every round:
#  - TLS termination: `relay -k --ssl` (BEFORE, AFTER), socat OPENSSL-LISTEN,fork and
#    ncat --ssl --sh-exec "ncat ..." in front of a plain `duplex listen -k --recv-only` sink;
#    AFTER's `connect --ssl` sends SIZE MiB (the same client for all)
#  - TLS bulk: `connect --ssl` to `listen --recv-only --ssl` of the same build; socat to socat
# Prints one line per round and kind (MiB/s). Environment: SIZE (MiB, 512), ROUNDS (5).
set -u
B=$(realpath "$1"); A=$(realpath "$2")
SIZE=${SIZE:-512}; ROUNDS=${ROUNDS:-5}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$W/k.pem" \
    -out "$W/c.pem" -days 1 -subj /CN=localhost 2>/dev/null
port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# a -k listener may take a probe connection; a one-client one must not: ss(8) instead
wl() { for _ in $(seq 200); do ss -ltnH "sport = :$1" | grep -q . && return; sleep 0.05; done; }
rate() { python3 -c "print(round($SIZE * 1e9 / ($2 - $1)))"; }
build() { [ "$1" = before ] && echo "$B" || echo "$A"; }

term() { # KIND -> MiB/s
    local sp tp s t t0 t1
    sp=$(port)
    "$A" listen -k --recv-only 127.0.0.1 "$sp" > /dev/null 2>&1 < /dev/null &
    s=$!
    wl "$sp"
    tp=$(port)
    case $1 in
        before|after) "$(build "$1")" relay -k --ssl --ssl-cert "$W/c.pem" --ssl-key "$W/k.pem" \
                          "127.0.0.1:$tp" "127.0.0.1:$sp" 2>/dev/null & ;;
        socat) socat "OPENSSL-LISTEN:$tp,bind=127.0.0.1,reuseaddr,fork,cert=$W/c.pem,key=$W/k.pem,verify=0" \
                   "TCP:127.0.0.1:$sp" 2>/dev/null & ;;
        ncat) ncat --ssl --ssl-cert "$W/c.pem" --ssl-key "$W/k.pem" -l -k 127.0.0.1 "$tp" \
                  --sh-exec "ncat 127.0.0.1 $sp" 2>/dev/null & ;;
    esac
    t=$!
    wl "$tp"
    t0=$(date +%s%N)
    head -c "${SIZE}M" /dev/zero | timeout 120 "$A" connect --ssl --ssl-no-verify 127.0.0.1 "$tp" > /dev/null 2>&1
    t1=$(date +%s%N)
    pkill -P "$t" 2>/dev/null # socat's and ncat's children, by parent
    kill "$t" "$s" 2>/dev/null
    wait "$t" "$s" 2>/dev/null
    rate "$t0" "$t1"
}

bulk() { # KIND -> MiB/s
    local p r t0 t1 v
    p=$(port)
    case $1 in
        before|after)
            v=$(build "$1")
            "$v" listen --recv-only --ssl --ssl-cert "$W/c.pem" --ssl-key "$W/k.pem" 127.0.0.1 "$p" \
                > /dev/null 2>&1 < /dev/null &
            r=$!
            wl "$p"
            t0=$(date +%s%N)
            head -c "${SIZE}M" /dev/zero | timeout 120 "$v" connect --ssl --ssl-no-verify 127.0.0.1 "$p" > /dev/null 2>&1
            t1=$(date +%s%N) ;;
        socat)
            socat -u "OPENSSL-LISTEN:$p,bind=127.0.0.1,reuseaddr,cert=$W/c.pem,key=$W/k.pem,verify=0" STDOUT \
                > /dev/null 2>&1 < /dev/null &
            r=$!
            wl "$p"
            t0=$(date +%s%N)
            head -c "${SIZE}M" /dev/zero | timeout 120 socat -u STDIN "OPENSSL:127.0.0.1:$p,verify=0" > /dev/null 2>&1
            t1=$(date +%s%N) ;;
    esac
    kill "$r" 2>/dev/null
    wait "$r" 2>/dev/null
    rate "$t0" "$t1"
}

for i in $(seq "$ROUNDS"); do
    echo "round $i term before $(term before) after $(term after) socat $(term socat) ncat $(term ncat)"
    echo "round $i bulk before $(bulk before) after $(bulk after) socat $(bulk socat)"
done
