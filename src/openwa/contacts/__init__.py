"""Contacts: who a session knows, and whether a number is on WhatsApp."""
