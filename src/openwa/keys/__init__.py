"""API keys: who may call the API, with which role, on which sessions."""
