"""Chats: the conversations of a session, from its stored messages."""
