"""Helpers to test against the real servers users run (InfluxDB 1.x, Mosquitto), started as
plain processes on 127.0.0.1: used by the project's tests and benchmarks, and available to a
third-party protocol plugin's tests. Standard library only; nothing here is loaded by the
collector."""
