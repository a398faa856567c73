"""WhatsApp engines behind one port: the mock sandbox now, real engines later."""
