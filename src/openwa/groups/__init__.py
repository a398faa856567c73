"""Groups: list, create, change and leave WhatsApp groups through the session's engine."""
