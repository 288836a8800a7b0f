"""DCIM with heat-recovery telemetry."""

__version__ = "0.1.0"
