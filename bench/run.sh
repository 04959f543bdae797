#!/usr/bin/env bash
# bench/run.sh DUPLEX: build bench/ and run every benchmark against DUPLEX.
# `make bench` at the top level calls this with the absolute path of build/duplex.
# Extra benchmarks are added in the marked place below; each one gets DUPLEX and
# writes its own bench/results/<name>-<date>.md.
set -eu
if [ $# -ne 1 ] || [ ! -x "$1" ]; then
    echo "usage: $0 /path/to/duplex" >&2
    exit 2
fi
HERE=$(cd "$(dirname "$0")" && pwd)
DUPLEX=$1

make -C "$HERE"

# Benchmarks, one per line. To select: BENCHES="echo" bench/run.sh ...
BENCHES=${BENCHES:-"echo bulk relay relay_udp broker tls proxy targets"}
for b in $BENCHES; do
    case $b in
        echo) "$HERE/echo.sh" "$DUPLEX" ;;
        bulk)  "$HERE/bulk.sh"  "$DUPLEX" ;;  # bulk transfer: duplex vs nc / ncat / socat
        relay) "$HERE/relay.sh" "$DUPLEX" ;;  # relay vs socat / haproxy / direct
        relay_udp) "$HERE/relay_udp.sh" "$DUPLEX" ;; # relay -u vs socat UDP4-LISTEN,fork / direct
        broker) "$HERE/broker.sh" "$DUPLEX" ;; # fan-out: duplex --broker vs ncat --broker
        tls) "$HERE/tls.sh" "$DUPLEX" ;;       # TLS termination: relay --ssl vs socat / stunnel / ncat
        proxy) "$HERE/proxy.sh" "$DUPLEX" ;;   # proxy server tunnels vs microsocks / tinyproxy
        targets) "$HERE/targets.sh" "$DUPLEX" ;; # relay: 1 target vs 3 (--balance), and haproxy
        *) echo "run.sh: unknown benchmark $b" >&2; exit 2 ;;
    esac
done
