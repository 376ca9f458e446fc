#!/usr/bin/env bash
# One node of the site's openGemini cluster: ts-meta, then ts-store, then ts-sql (the
# order openGemini's deployment guide asks for), sharing one configuration written from
# /etc/openGemini/openGemini.conf.template. If any of the three exits, the others are
# stopped and the container exits, so Docker restarts the node whole.
#   OG_NODE   this node's name, resolvable by the other nodes (gemini-1)
#   OG_PEERS  the three nodes' names, comma separated (gemini-1,gemini-2,gemini-3)
set -euo pipefail

node="${OG_NODE:?OG_NODE must name this node, e.g. gemini-1}"
peers="${OG_PEERS:?OG_PEERS must list the three nodes, e.g. gemini-1,gemini-2,gemini-3}"
home=/var/lib/openGemini
config="$home/openGemini.conf"
addr="$(hostname -i | awk '{print $1}')"

meta_join=""
gossip_members=""
IFS=, read -r -a names <<< "$peers"
for name in "${names[@]}"; do
    meta_join+="\"$name:8092\", "
    gossip_members+="\"$name:8010\", "
done
meta_join="${meta_join%, }"
gossip_members="${gossip_members%, }"

mkdir -p "$home/meta" "$home/data" "$home/wal" "$home/logs"
sed -e "s/{{addr}}/$addr/g" -e "s/{{domain}}/$node/g" \
    -e "s/{{meta_join}}/$meta_join/g" -e "s/{{gossip_members}}/$gossip_members/g" \
    /etc/openGemini/openGemini.conf.template > "$config"

pids=()
stop_all() {
    kill -TERM "${pids[@]}" 2> /dev/null || true
    wait || true
}
trap 'stop_all; exit 0' TERM INT

# Wait until this node's process listens on a port before starting the next one.
wait_port() {
    local port=$1 what=$2
    for _ in $(seq 1 120); do
        if (: > "/dev/tcp/$addr/$port") 2> /dev/null; then
            return 0
        fi
        sleep 1
    done
    echo "openGemini node $node: $what did not listen on $addr:$port within 120 s" >&2
    stop_all
    exit 1
}

echo "openGemini node $node at $addr; meta nodes: $peers"
ts-meta -config "$config" & pids+=("$!")
wait_port 8092 ts-meta
ts-store -config "$config" & pids+=("$!")
wait_port 8400 ts-store
ts-sql -config "$config" & pids+=("$!")

# The first of the three to exit ends the node.
wait -n "${pids[@]}" || true
echo "openGemini node $node: a process exited; stopping the others" >&2
stop_all
exit 1
