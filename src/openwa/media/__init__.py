"""Media: what comes in (upload, base64, URL), how it is checked, stored and linked."""
