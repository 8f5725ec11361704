"""Thin Telegram handlers, one module per command."""
