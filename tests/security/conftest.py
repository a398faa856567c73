"""Fixtures of the security tests: the webhook tests' receiver, for deliveries."""

from tests.webhooks.conftest import receiver

__all__ = ["receiver"]
