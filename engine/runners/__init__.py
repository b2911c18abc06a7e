"""Runners: how batches reach the core (local asyncio process; Faust on Kafka)."""
