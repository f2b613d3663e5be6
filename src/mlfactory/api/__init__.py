"""The serving API: authenticated predictions, browsing, run status and Prometheus metrics."""
