"""Pluggy's webhooks: the receiver that stores them (receiver.py, inbox.py) and the handlers the
worker runs for them (handlers.py)."""
