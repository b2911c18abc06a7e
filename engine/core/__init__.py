"""The core: columnar batches, per-device slots, the pipeline step. No I/O here."""
