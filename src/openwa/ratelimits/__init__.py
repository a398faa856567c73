"""Request rate limits: per API key (by role) and failed authentication per client address."""
