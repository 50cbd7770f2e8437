"""Operability: Prometheus metrics (worker: SDK + ``mdco_worker_*``; API: ``mdco_*`` business metrics)
and structured JSON logs without PII. See README "Operating"."""
