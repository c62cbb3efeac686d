"""The deterministic simulator that drives the pure cores under faults (used by tests)."""
