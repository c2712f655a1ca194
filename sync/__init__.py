"""The service layer: what the business does with Pluggy's data (sync, queue, worker)."""
