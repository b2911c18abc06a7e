"""The flow: a batch of readings (or frames) through the detectors into incidents, and what a runner keeps
of it (checkpoints, per-site state). Every runner (local, Faust worker, ``replay --direct``, tuning) drives
it through ``Pipeline.detect_batch`` (findings with their data time) and ``apply_findings`` (events);
tuning uses the first call alone."""
