"""Messages: accepted into the durable queue, sent in order, tracked by acks."""
