"""Alerting: rules as data (``rules``, ``loader``, ``expr``), the live evaluator
(``evaluator``), its durable state (``state``), notifiers (``notify``) and the collector's
engine (``engine``). See docs/alerts.md."""
