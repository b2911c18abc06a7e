"""MQTT ingest: topic parsing, payload decoding, validation, dead-lettering, batching."""
