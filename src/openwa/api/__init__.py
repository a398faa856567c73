"""The HTTP edge: envelope, errors, auth, routers."""
