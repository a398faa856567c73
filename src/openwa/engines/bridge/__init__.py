"""Baileys and whatsapp-web.js, run by a Node.js bridge program (see docs/bridge.md)."""
