"""What the operator console reads and does: the service layer's view of the whole service (every
user's connections, the queue, the webhooks), as opposed to one user's (sync/listing.py)."""
