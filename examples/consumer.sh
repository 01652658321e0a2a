#!/bin/sh
# Tail a Flamingo subscription queue with redis-cli (raw or envelope format).
#
#   examples/consumer.sh tweets                  # namespace "flamingo", local Redis
#   NAMESPACE=other REDIS_HOST=10.0.0.2 examples/consumer.sh tweets
#
# Each BLPOP prints the queue name and then one event (a line of JSON).
set -eu
SUB=${1:?usage: consumer.sh SUBSCRIPTION}
NAMESPACE=${NAMESPACE:-flamingo}
HOST=${REDIS_HOST:-127.0.0.1}
PORT=${REDIS_PORT:-6379}
while true; do
  redis-cli -h "$HOST" -p "$PORT" --raw BLPOP "$NAMESPACE:queue:$SUB" 0 | sed -n '2p'
done
