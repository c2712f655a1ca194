"""What both HTTP entry points (`api/` and `webhooks/`) share: the one JSON error shape every
answer uses, and the handlers that render any error in it."""
