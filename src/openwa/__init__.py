"""OpenWA: a self-hosted WhatsApp HTTP API gateway."""

__version__ = "0.1.0"
