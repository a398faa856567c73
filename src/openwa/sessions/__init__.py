"""Sessions: linked WhatsApp accounts, their lifecycle and their runtime."""
