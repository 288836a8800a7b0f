"""Developer tools run from a clone (not installed)."""
