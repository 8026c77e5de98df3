#!/bin/bash
# A private nats-server with JetStream on 127.0.0.1 for the peers bench
# (benches/python/multiprocess.py, make bench-python). Its store, pid file and log
# live in DIR, which `start` creates and `stop` removes.
#
#   benches/python/nats.sh start DIR   starts it, waits (bounded, 30 s) until it
#                                      accepts, prints nats://127.0.0.1:PORT
#   benches/python/nats.sh stop DIR    SIGTERM, then SIGKILL after 5 s; removes DIR
#
# nats-server comes from Debian (make setup installs it).
set -eu
cmd=${1:?usage: nats.sh start|stop DIR}
dir=${2:?usage: nats.sh start|stop DIR}
case $cmd in
start)
    srv=$(command -v nats-server || echo /usr/sbin/nats-server)
    test -x "$srv" || { echo "nats-server is not installed (make setup)" >&2; exit 1; }
    rm -rf "$dir" && mkdir -p "$dir/store"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    setsid "$srv" -js -a 127.0.0.1 -p "$port" -sd "$dir/store" -P "$dir/nats.pid" \
        > "$dir/nats.log" 2>&1 < /dev/null &
    echo $! > "$dir/launcher.pid"
    i=0
    until (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; do
        i=$((i + 1))
        if [ $i -gt 150 ] || ! kill -0 "$(cat "$dir/launcher.pid")" 2>/dev/null; then
            echo "nats-server did not start within 30 s; its log:" >&2
            tail -20 "$dir/nats.log" >&2
            "$0" stop "$dir" >&2 || true
            exit 1
        fi
        sleep 0.2
    done
    echo "nats-server (JetStream) up on 127.0.0.1:$port" >&2
    echo "nats://127.0.0.1:$port"
    ;;
stop)
    test -f "$dir/launcher.pid" || { rm -rf "$dir"; exit 0; }
    p=$(cat "$dir/launcher.pid")
    if kill -0 "$p" 2>/dev/null; then
        kill "$p" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$p" 2>/dev/null || true
    fi
    rm -rf "$dir"
    ;;
*) echo "usage: nats.sh start|stop DIR" >&2; exit 2 ;;
esac
