"""Produce one notification request with the official Confluent Python client.

Usage: produce_avro.py BOOTSTRAP REGISTRY_URL TOPIC SCHEMA_PATH RECORD_JSON

RECORD_JSON is the record in Avro's own shape (enum symbols, epoch-millisecond timestamps,
`data` as a JSON string): exactly what an upstream Python service would hand the serializer.
The serializer uses its defaults: TopicNameStrategy and auto-registration.
"""

import json
import sys

from confluent_kafka import SerializingProducer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import StringSerializer


def main() -> None:
    bootstrap, registry_url, topic, schema_path, record_json = sys.argv[1:6]
    with open(schema_path, encoding="utf-8") as f:
        schema = f.read()
    record = json.loads(record_json)
    registry = SchemaRegistryClient({"url": registry_url})
    producer = SerializingProducer(
        {
            "bootstrap.servers": bootstrap,
            "key.serializer": StringSerializer("utf_8"),
            "value.serializer": AvroSerializer(registry, schema),
            "enable.idempotence": True,
        }
    )
    errors = []
    key = f"{record['tenant']}:{record['recipient']['user_id']}"
    producer.produce(topic, key=key, value=record, on_delivery=lambda err, _msg: err and errors.append(err))
    remaining = producer.flush(30)
    if errors or remaining:
        sys.exit(f"delivery failed: {errors} ({remaining} not flushed)")


if __name__ == "__main__":
    main()
