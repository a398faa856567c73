"""The audit log: who changed what, from where, with what outcome."""
