"""One router per feature; each route parses, calls one service method, returns a schema."""
