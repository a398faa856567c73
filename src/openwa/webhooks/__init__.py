"""Webhooks: registration, signed delivery with retries, and the delivery log."""
