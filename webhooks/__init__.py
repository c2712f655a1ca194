"""The /webhooks blueprint (verify, store, acknowledge) and the event handlers: not built yet."""
