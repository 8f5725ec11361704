"""Evaluation: QA datasets, the harness that asks them through the answerer, metrics, reports, the naive peer."""
