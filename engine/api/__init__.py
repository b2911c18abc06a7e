"""HTTP: /metrics, /healthz."""
