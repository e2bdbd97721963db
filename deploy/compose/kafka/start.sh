#!/usr/bin/env bash
# The Kafka container's entry point: on the first start, format the storage with the admin
# principal's SCRAM credential (KRaft takes its first SCRAM user only at format time), then hand
# over to the image's own start script, which finds the storage formatted and leaves it be.
# The admin password reaches the format tool through a 0600 java @argfile, never argv.
set -euo pipefail
umask 077

: "${URBANPULSE_KAFKA_ADMIN_PASSWORD:?}" "${CLUSTER_ID:?}" "${KAFKA_LOG_DIRS:?}"
java="${JAVA_HOME:+$JAVA_HOME/bin/}java"

# The admin's client settings, for the healthcheck and for operators' tools (--command-config).
cat > /tmp/admin.properties <<PROPERTIES
security.protocol=SASL_PLAINTEXT
sasl.mechanism=SCRAM-SHA-256
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="${URBANPULSE_KAFKA_ADMIN_PASSWORD}";
PROPERTIES

if [ ! -f "${KAFKA_LOG_DIRS}/meta.properties" ]; then
    cat > /tmp/format.properties <<PROPERTIES
process.roles=${KAFKA_PROCESS_ROLES}
node.id=${KAFKA_NODE_ID}
controller.quorum.voters=${KAFKA_CONTROLLER_QUORUM_VOTERS}
controller.listener.names=${KAFKA_CONTROLLER_LISTENER_NAMES}
listeners=${KAFKA_LISTENERS}
listener.security.protocol.map=${KAFKA_LISTENER_SECURITY_PROTOCOL_MAP}
inter.broker.listener.name=${KAFKA_INTER_BROKER_LISTENER_NAME}
log.dirs=${KAFKA_LOG_DIRS}
PROPERTIES
    cat > /tmp/format.args <<ARGS
-cp
/opt/kafka/libs/*
kafka.tools.StorageTool
format
--cluster-id
${CLUSTER_ID}
--config
/tmp/format.properties
--add-scram
SCRAM-SHA-256=[name=admin,password=${URBANPULSE_KAFKA_ADMIN_PASSWORD}]
ARGS
    "$java" @/tmp/format.args
    rm -f /tmp/format.args
fi
exec /etc/kafka/docker/run "$@"
