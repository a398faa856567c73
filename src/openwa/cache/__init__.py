"""Cache port (short-lived lookups) with in-memory and Redis adapters."""
