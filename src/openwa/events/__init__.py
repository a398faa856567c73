"""Events: what happened to a session, as clients receive it."""
