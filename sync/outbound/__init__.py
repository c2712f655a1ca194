"""Outbound events to the app built on this service, following the Standard Webhooks specification:
the event types and how each is queued (events.py), the endpoints and their secrets (endpoints.py,
signing.py), the URL guard (guard.py) and the delivery job (delivery.py)."""
