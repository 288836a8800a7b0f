"""KPIs: pure indicator functions and their computation over a store."""
