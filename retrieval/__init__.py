"""Ingest, index, retrieve and answer: everything newsbot does that is not Telegram."""
