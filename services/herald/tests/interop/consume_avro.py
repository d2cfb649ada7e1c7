"""Consume records with the official Confluent Python client and print each value as JSON.

Usage: consume_avro.py BOOTSTRAP REGISTRY_URL TOPIC COUNT

Reads `read_committed` from the beginning until COUNT records arrived (or 60 s passed).
Timestamps are printed as epoch milliseconds.
"""

import datetime
import json
import sys
import time
import uuid

from confluent_kafka import DeserializingConsumer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import StringDeserializer


def plain(value):
    if isinstance(value, datetime.datetime):
        return int(value.timestamp() * 1000)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def main() -> None:
    bootstrap, registry_url, topic, count = sys.argv[1:5]
    registry = SchemaRegistryClient({"url": registry_url})
    consumer = DeserializingConsumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"interop-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "key.deserializer": StringDeserializer("utf_8"),
            "value.deserializer": AvroDeserializer(registry),
        }
    )
    consumer.subscribe([topic])
    seen = 0
    deadline = time.monotonic() + 60
    try:
        while seen < int(count) and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None:
                continue
            if message.error():
                sys.exit(f"consume failed: {message.error()}")
            print(json.dumps({"key": message.key(), "value": plain(message.value())}), flush=True)
            seen += 1
    finally:
        consumer.close()
    if seen < int(count):
        sys.exit(f"only {seen} of {count} records arrived")


if __name__ == "__main__":
    main()
