#!/bin/bash
# A private RabbitMQ broker on 127.0.0.1 for the oslo.messaging bench (make bench-oslo);
# never the system service. Everything (node data, logs, pid, config, Erlang cookie,
# its own epmd port) lives in DIR, which `start` creates and `stop` removes.
#
#   benches/rabbitmq.sh start DIR   starts it, waits (bounded) until AMQP accepts,
#                                   prints rabbit://guest:guest@127.0.0.1:PORT/
#   benches/rabbitmq.sh queue DIR NAME   declares the durable queue NAME (vhost /)
#   benches/rabbitmq.sh stop DIR    rabbitmqctl shutdown, then kills what is left
#
# Needs the Debian package rabbitmq-server (make bench-oslo installs it if missing).
# Runs /usr/lib/rabbitmq/bin/* directly: /usr/sbin's wrappers switch to the
# rabbitmq user and drop this environment.
set -eu
cmd=${1:?usage: rabbitmq.sh start|stop DIR}
dir=${2:?usage: rabbitmq.sh start|stop DIR}
bin=/usr/lib/rabbitmq/bin
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

env_of() {  # the broker's environment, from DIR/env
    . "$dir/env"
    export HOME="$dir" RABBITMQ_NODENAME="$node" RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
        RABBITMQ_NODE_PORT="$port" RABBITMQ_DIST_PORT="$dist" ERL_EPMD_PORT="$epmd" \
        RABBITMQ_MNESIA_BASE="$dir/mnesia" RABBITMQ_LOG_BASE="$dir/log" \
        RABBITMQ_PID_FILE="$dir/rabbitmq.pid" RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf" \
        RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins" \
        RABBITMQ_ADVANCED_CONFIG_FILE="$dir/advanced.config"
}

case $cmd in
start)
    test -x $bin/rabbitmq-server || { echo "rabbitmq-server is not installed (apt-get install rabbitmq-server)" >&2; exit 1; }
    rm -rf "$dir" && mkdir -p "$dir/mnesia" "$dir/log"
    cat > "$dir/env" <<EOT
node=lqbench$$@localhost
port=$(free_port)
dist=$(free_port)
epmd=$(free_port)
EOT
    printf 'listeners.tcp.default = 127.0.0.1:%s\ndisk_free_limit.absolute = 50MB\n' \
        "$(. "$dir/env"; echo $port)" > "$dir/rabbitmq.conf"
    echo '[].' > "$dir/enabled_plugins"
    env_of
    t0=$(date +%s)
    setsid $bin/rabbitmq-server > "$dir/log/console.log" 2>&1 < /dev/null &
    echo $! > "$dir/launcher.pid"
    i=0
    until (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; do
        i=$((i + 1))
        if [ $i -gt 240 ] || ! kill -0 "$(cat "$dir/launcher.pid")" 2>/dev/null; then
            echo "RabbitMQ did not start within 120 s; its log:" >&2
            tail -30 "$dir/log/console.log" >&2
            "$0" stop "$dir" >&2 || true
            exit 1
        fi
        sleep 0.5
    done
    echo "RabbitMQ $node up on 127.0.0.1:$port in $(( $(date +%s) - t0 )) s" >&2
    echo "rabbit://guest:guest@127.0.0.1:$port/"
    ;;
queue)
    name=${3:?usage: rabbitmq.sh queue DIR NAME}
    case $name in *[!A-Za-z0-9._-]*|'') echo "queue name $name: only A-Za-z0-9._-" >&2; exit 2 ;; esac
    env_of
    timeout 60 $bin/rabbitmqctl -n "$node" eval \
        "rabbit_amqqueue:declare(rabbit_misc:r(<<\"/\">>, queue, <<\"$name\">>), true, false, [], none, <<\"libqueue\">>)." >/dev/null
    ;;
stop)
    test -f "$dir/env" || exit 0
    env_of
    timeout 60 $bin/rabbitmqctl -n "$node" shutdown >/dev/null 2>&1 || true
    for f in "$dir/rabbitmq.pid" "$dir/launcher.pid"; do
        p=$(cat "$f" 2>/dev/null || true)
        [ -n "$p" ] && kill -0 "$p" 2>/dev/null && { kill "$p" 2>/dev/null || true; sleep 1; kill -9 "$p" 2>/dev/null || true; }
    done
    # the epmd that this node started on its own port
    command -v epmd >/dev/null && epmd -port "$epmd" -kill >/dev/null 2>&1 || true
    rm -rf "$dir"
    ;;
*) echo "usage: rabbitmq.sh start|queue|stop DIR" >&2; exit 2 ;;
esac
