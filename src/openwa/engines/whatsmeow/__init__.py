"""whatsmeow (through neonize) behind the engine port, run in a worker process."""
