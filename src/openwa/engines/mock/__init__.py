"""The mock engine: a simulated WhatsApp for development, demos and every test."""
