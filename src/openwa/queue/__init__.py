"""The outbox: jobs written in the caller's transaction, claimed with leases."""
