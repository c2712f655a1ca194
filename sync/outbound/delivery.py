"""Sending one delivery (the `deliver_event` job): signed as Standard Webhooks asks, to the address
the URL guard checked, with a timeout and no redirect followed; retried on the spec's schedule for
about three days, then dead. An endpoint whose delivery died without one success since it was queued
has failed for those three days: it is disabled (a metric counts it and a line is logged).

At least once: the job is queued with the event, and an attempt is recorded only after it ends, so a
worker killed mid-send leaves the job to be taken back and the delivery sent again.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import certifi
import urllib3
from urllib3.exceptions import HTTPError, TimeoutError

from config import Settings
from jobqueue import ClaimedJob, RetryLater
from models import OPEN_DELIVERY_STATUSES, DeliveryStatus, EndpointStatus, Job, WebhookDelivery, WebhookEndpoint
from models.base import utcnow
from models.database import DbSession
from observability import logs, metrics

from ..job_context import SyncJobContext
from ..scheduling import JobKind
from .guard import Target, UnsafeUrl, check_url
from .signing import SecretUnreadable, signature_header, unseal

log = logging.getLogger(__name__)

# After the first attempt (at once): the waits before each next one, as the spec suggests; the last
# attempt comes about 67 hours after the first.
RETRY_DELAYS = tuple(
    timedelta(seconds=s).total_seconds()
    for s in (5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 10 * 3600, 10 * 3600, 10 * 3600, 10 * 3600, 10 * 3600)
)
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 10.0
# What is read of an answer at most: only its status matters.
ANSWER_BYTES = 64 * 1024
USER_AGENT = "pluggy-sync-webhooks/1"


@dataclass(frozen=True)
class Attempt:
    """How one attempt went: the answer's status code if one came, and the error if it failed."""

    status_code: int | None = None
    error: str | None = None

    @property
    def delivered(self) -> bool:
        return self.error is None


def deliver_event(context: SyncJobContext) -> None:
    """The job: one attempt at the delivery, when it is due."""
    session = context.session
    delivery = session.get(WebhookDelivery, context.job.payload["delivery_id"])
    if delivery is None or delivery.status not in OPEN_DELIVERY_STATUSES:
        return  # its endpoint was deleted, or it was delivered or given up meanwhile
    now = utcnow()
    if delivery.next_attempt_at is not None and delivery.next_attempt_at > now:
        raise RetryLater((delivery.next_attempt_at - now).total_seconds(), "next attempt not due")
    if delivery.endpoint.status == EndpointStatus.DISABLED:
        give_up(delivery, "the endpoint is disabled", now)
        session.commit()
        return
    record(session, delivery, attempt(delivery, context.settings, now), now)
    session.commit()
    if delivery.status == DeliveryStatus.FAILED_RETRYING and delivery.next_attempt_at is not None:
        raise RetryLater((delivery.next_attempt_at - utcnow()).total_seconds(), "delivery failed")


def job_gave_up(session: DbSession, job: ClaimedJob | Job, error: str, *, discarded: bool = False) -> None:
    """A `deliver_event` job that went dead (its handler kept failing, or its workers kept dying),
    or that an operator `discarded`: its delivery is dead too, rather than pending for ever
    (committed). A discard says nothing of the endpoint, which stays as it is."""
    if job.kind != JobKind.DELIVER_EVENT:
        return
    delivery = session.get(WebhookDelivery, job.payload.get("delivery_id"))
    if delivery is not None and delivery.status in OPEN_DELIVERY_STATUSES:
        reason = error if discarded else f"the delivery job gave up: {error}"
        give_up(delivery, reason[:500], utcnow(), judge_endpoint=not discarded)
        session.commit()


def attempt(delivery: WebhookDelivery, settings: Settings, now: datetime) -> Attempt:
    endpoint = delivery.endpoint
    try:
        target = check_url(endpoint.url, allow_private=settings.allow_private_webhook_urls)
        secrets = secrets_in_use(endpoint, service_keys(settings), now)
    except UnsafeUrl as refused:
        return Attempt(error=f"refused: {refused}")
    except SecretUnreadable as unreadable:
        return Attempt(error=str(unreadable))
    event = delivery.event
    body = json.dumps(event.payload, separators=(",", ":"), ensure_ascii=False)
    headers = {
        "webhook-id": event.message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature_header(secrets, event.message_id, now, body),
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }
    return post(target, body.encode(), headers)


def service_keys(settings: Settings) -> list[str]:
    return [settings.secret_key, *settings.secret_key_fallbacks]


def secrets_in_use(endpoint: WebhookEndpoint, keys: list[str], now: datetime) -> list[str]:
    """The endpoint's secret, and the one it replaced while that one's day of grace lasts."""
    found = [unseal(endpoint.sealed_secret, keys)]
    expires = endpoint.previous_secret_expires_at
    if endpoint.sealed_previous_secret is not None and expires is not None and expires > now:
        found.append(unseal(endpoint.sealed_previous_secret, keys))
    return found


def post(target: Target, body: bytes, headers: dict[str, str]) -> Attempt:
    """POST to the checked address itself (no second lookup of the name); TLS still verifies the
    certificate for the URL's host. urllib3 directly, since requests cannot pin the address."""
    timeout = urllib3.Timeout(connect=CONNECT_TIMEOUT_S, read=READ_TIMEOUT_S)
    options: dict = {"host": target.address, "port": target.port, "timeout": timeout, "retries": False, "maxsize": 1}
    pool_class: type[urllib3.HTTPConnectionPool] = urllib3.HTTPConnectionPool
    if target.scheme == "https":
        pool_class = urllib3.HTTPSConnectionPool
        options.update(
            server_hostname=target.host,
            assert_hostname=target.host,
            cert_reqs="CERT_REQUIRED",
            ca_certs=certifi.where(),
        )
    try:
        with pool_class(**options) as pool:
            answer = pool.urlopen(
                "POST",
                target.path,
                body=body,
                headers={**headers, "host": host_header(target)},
                redirect=False,
                retries=False,
                preload_content=False,
            )
            answer.read(ANSWER_BYTES)
            answer.release_conn()
    except TimeoutError as slow:
        return Attempt(
            error=f"timeout: {type(slow).__name__} (connect {CONNECT_TIMEOUT_S:g} s, read {READ_TIMEOUT_S:g} s)"
        )
    except (HTTPError, OSError) as failed:
        return Attempt(error=f"{type(failed).__name__}: {failed}"[:500])
    if 200 <= answer.status < 300:
        return Attempt(answer.status)
    if 300 <= answer.status < 400:
        return Attempt(answer.status, f"answered {answer.status}: redirects are not followed")
    return Attempt(answer.status, f"answered {answer.status}")


def host_header(target: Target) -> str:
    host = f"[{target.host}]" if ":" in target.host else target.host
    default = 443 if target.scheme == "https" else 80
    return host if target.port == default else f"{host}:{target.port}"


def record(session: DbSession, delivery: WebhookDelivery, result: Attempt, now: datetime) -> None:
    delivery.attempts += 1
    delivery.last_status_code = result.status_code
    delivery.last_error = result.error
    if result.delivered:
        delivery.status = DeliveryStatus.DELIVERED
        delivery.delivered_at = now
        delivery.next_attempt_at = None
        delivery.endpoint.last_delivered_at = now
        metrics.WEBHOOK_DELIVERIES.labels("delivered").inc()
    elif delivery.attempts > len(RETRY_DELAYS):
        give_up(delivery, result.error or "failed", now)
    else:
        delivery.status = DeliveryStatus.FAILED_RETRYING
        delivery.next_attempt_at = now + timedelta(seconds=RETRY_DELAYS[delivery.attempts - 1])
        metrics.WEBHOOK_DELIVERIES.labels("failed").inc()
    logs.event(
        log,
        "webhook delivery attempted",
        logging.INFO if result.delivered else logging.WARNING,
        delivery_id=delivery.id,
        endpoint_id=delivery.endpoint_id,
        event_type=delivery.event.type,
        attempt=delivery.attempts,
        status=delivery.status,
        status_code=result.status_code,
        error=result.error,
    )


def give_up(delivery: WebhookDelivery, error: str, now: datetime, *, judge_endpoint: bool = True) -> None:
    """The delivery is dead; with `judge_endpoint`, its endpoint is disabled if nothing reached it
    since it was queued."""
    delivery.status = DeliveryStatus.DEAD
    delivery.next_attempt_at = None
    delivery.last_error = error
    metrics.WEBHOOK_DELIVERIES.labels("dead").inc()
    if not judge_endpoint:
        return
    endpoint = delivery.endpoint
    last_success = endpoint.last_delivered_at
    if endpoint.status == EndpointStatus.ACTIVE and (last_success is None or last_success < delivery.created_at):
        disable(endpoint, now)


def disable(endpoint: WebhookEndpoint, now: datetime) -> None:
    endpoint.status = EndpointStatus.DISABLED
    endpoint.disabled_at = now
    metrics.WEBHOOK_ENDPOINTS_DISABLED.inc()
    logs.event(
        log,
        "webhook endpoint disabled: its deliveries keep dying",
        logging.ERROR,
        endpoint_id=endpoint.id,
        since=endpoint.last_delivered_at.isoformat() if endpoint.last_delivered_at else None,
    )
