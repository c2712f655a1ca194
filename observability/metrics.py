"""Prometheus metrics (prometheus-client).

Counters and histograms are kept by the process that does the work: the web processes count
requests and webhooks, the workers count jobs, Pluggy calls, sync runs and rows written. With
PROMETHEUS_MULTIPROC_DIR set (prometheus-client's own convention) every process on a machine
writes its values there and any one of them reports them all. What lives in the database (the
queue, the connections' staleness) is read from it at scrape time, so every process reports the
same figures whichever is scraped.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from datetime import datetime

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily

PREFIX = "pluggy_sync"
# Seconds, from a fast loopback answer to a long backfill.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
LAG_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 6 * 3600)

HTTP_REQUESTS = Histogram(
    f"{PREFIX}_http_request_duration_seconds",
    "Requests this service answered, by route and status.",
    ["method", "route", "status"],
    buckets=DURATION_BUCKETS,
)
WEBHOOKS_RECEIVED = Counter(
    f"{PREFIX}_webhooks_received",
    "Webhook deliveries, by event and outcome (accepted, duplicate, unauthorized, invalid, unavailable).",
    ["event", "outcome"],
)
WEBHOOK_LAG = Histogram(
    f"{PREFIX}_webhook_processing_lag_seconds",
    "From a webhook's arrival to the worker finishing with it.",
    ["event"],
    buckets=LAG_BUCKETS,
)
JOB_DURATION = Histogram(
    f"{PREFIX}_job_duration_seconds",
    "Jobs the workers ran, by kind and outcome (done, retry, failed, dead, released, lease_lost).",
    ["kind", "outcome"],
    buckets=DURATION_BUCKETS,
)
PLUGGY_REQUESTS = Counter(
    f"{PREFIX}_pluggy_requests",
    "Answers from Pluggy (those urllib3 retried included), by endpoint and HTTP status; "
    "status 'none' for a call that got no answer at all.",
    ["method", "endpoint", "status"],
)
PLUGGY_DURATION = Histogram(
    f"{PREFIX}_pluggy_request_duration_seconds",
    "Calls to Pluggy, retries included, by endpoint.",
    ["method", "endpoint"],
    buckets=DURATION_BUCKETS,
)
SYNC_RUNS = Counter(
    f"{PREFIX}_sync_runs",
    "Sync runs closed, by trigger and status.",
    ["trigger", "status"],
)
TRANSACTIONS_WRITTEN = Counter(
    f"{PREFIX}_transactions_written",
    "Transactions written to the database, by change (created, updated, deleted).",
    ["change"],
)
ROWS_REFUSED = Counter(
    f"{PREFIX}_rows_refused",
    "Rows Pluggy sent that were not written because their Pluggy id is stored under another "
    "connection (accounts, investments), account (transactions) or investment (its movements), by kind "
    "(account, transaction, investment, investment_transaction).",
    ["kind"],
)
QUEUE_CLAIM_CONFLICTS = Counter(
    f"{PREFIX}_queue_claim_conflicts",
    "Claims that lost a race with another worker for the same item and looked again.",
)
WORKER_DATABASE_ERRORS = Counter(
    f"{PREFIX}_worker_database_errors",
    "Database errors a worker rode out (rolled back, backed off, tried again): claiming a job, "
    "recording a job's outcome, listening for new jobs. One per failed try.",
)
DELETED_ITEM_DATA_REMOVED = Counter(
    f"{PREFIX}_deleted_item_data_removed",
    "Deleted connections whose copied data (accounts, transactions, products) was removed, by why the "
    "connection was deleted (item_deleted, item_not_found, user_request).",
    ["reason"],
)
DELETED_ITEM_ROWS_REMOVED = Counter(
    f"{PREFIX}_deleted_item_rows_removed",
    "Rows removed with deleted connections' copied data, by table.",
    ["table"],
)


CONSENTS_WITHHELD = Counter(
    f"{PREFIX}_consent_withheld",
    "Fetches that found an Open Finance item's consent ended, so Pluggy's data routes answer empty data: "
    "by reason (expired, revoked) and when (before: nothing was read; during: tombstones were held back). "
    "Nothing stored is changed either way.",
    ["reason", "found"],
)

WEBHOOK_DELIVERIES = Counter(
    f"{PREFIX}_webhook_deliveries",
    "Attempts at delivering outbound events to the app's endpoints, by outcome: delivered, failed (to be "
    "retried), dead (the last attempt of the schedule failed, or the endpoint is disabled).",
    ["outcome"],
)
WEBHOOK_ENDPOINTS_DISABLED = Counter(
    f"{PREFIX}_webhook_endpoints_disabled",
    "The app's webhook endpoints disabled because a delivery died with no success since it was queued "
    "(about three days of failures). Alert on any increase.",
)

# A path segment that names something (items, mfa, v2) rather than identifies it.
PATH_WORD = re.compile(r"^(v[0-9]{1,2}|[a-z][a-z_-]{0,29})$")


def endpoint_label(path: str) -> str:
    """A Pluggy path with its ids taken out: /items/3f1c.../mfa -> /items/{id}/mfa."""
    return "/".join(part if not part or PATH_WORD.match(part) else "{id}" for part in path.split("/"))


def count_transactions(created: int = 0, updated: int = 0, deleted: int = 0) -> None:
    for change, number in (("created", created), ("updated", updated), ("deleted", deleted)):
        if number:
            TRANSACTIONS_WRITTEN.labels(change).inc(number)


def count_data_removal(reason: str, rows: dict[str, int]) -> None:
    DELETED_ITEM_DATA_REMOVED.labels(reason).inc()
    for table, number in rows.items():
        if number:
            DELETED_ITEM_ROWS_REMOVED.labels(table).inc(number)


def count_refused(kind: str, number: int) -> None:
    if number:
        ROWS_REFUSED.labels(kind).inc(number)


def count_consent_withheld(reason: str, found: str) -> None:
    CONSENTS_WITHHELD.labels(reason, found).inc()


def observe_webhook_lag(events: Iterable[tuple[str, datetime]], now: datetime) -> None:
    """Each (event label, arrival) pair's time from arrival to `now`."""
    for label, received_at in events:
        WEBHOOK_LAG.labels(label).observe(max(0.0, (now - received_at).total_seconds()))


# Read from the database at scrape time -----------------------------------------------------


class SharedFigures:
    """The state every process sees alike, read from the database for this scrape: the queue and
    the staleness of the least recently synced connection. None when the database did not answer."""

    def __init__(self, queue: dict | None, oldest_connection_staleness_s: dict[bool, float] | None) -> None:
        self.queue = queue
        self.staleness = oldest_connection_staleness_s

    def collect(self):
        up = GaugeMetricFamily(f"{PREFIX}_database_up", "Whether the database answered this scrape.")
        up.add_metric([], 0 if self.queue is None else 1)
        yield up
        if self.queue is None or self.staleness is None:  # both are, when the database did not answer
            return
        jobs = GaugeMetricFamily(f"{PREFIX}_jobs", "Jobs in the queue, by state.", labels=["state"])
        for state in ("due", "scheduled", "running", "dead"):
            jobs.add_metric([state], self.queue[state])
        yield jobs
        oldest = GaugeMetricFamily(
            f"{PREFIX}_oldest_due_job_age_seconds", "How long the oldest due job has waited for a worker."
        )
        oldest.add_metric([], self.queue["oldest_due_age_s"])
        yield oldest
        stale = GaugeMetricFamily(
            f"{PREFIX}_oldest_connection_staleness_seconds",
            "Time since the least recently synced live connection was last synced (since it was "
            "registered, if never), apart for connections waiting for their user (an MFA code, an "
            "action, new credentials); 0 with no such connection.",
            labels=["waiting_for_user"],
        )
        for waiting, seconds in sorted(self.staleness.items()):
            stale.add_metric([str(waiting).lower()], seconds)
        yield stale


def process_registry() -> CollectorRegistry:
    """This process's metrics, or every process's on this machine in multiprocess mode."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


def exposition(shared: SharedFigures | None = None) -> tuple[bytes, str]:
    """The process's metrics, then the figures read from the database."""
    body = generate_latest(process_registry())
    if shared is not None:
        database = CollectorRegistry()
        database.register(shared)
        body += generate_latest(database)
    return body, CONTENT_TYPE_LATEST


def serve(port: int, host: str) -> None:
    """Expose this process's metrics over HTTP on a thread of its own (for worker processes)."""
    start_http_server(port, addr=host, registry=process_registry())
