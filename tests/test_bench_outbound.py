"""The outbound benchmark's machinery on a tiny volume, so that it cannot rot: the changes queue one
event each, the bare client's signed posts reach the receiver, and a whole run has the real worker
deliver every event to it, once each, then the lag trials. No timing is asserted."""

from __future__ import annotations

import sqlalchemy as sa
import urllib3

from bench import outbound
from bench.common import SECRET_KEY
from bench.outbound import APP_KEY, Receiver, event_bodies, post_signed, prepare, queue_events, receiving
from models import OutboundEvent, WebhookDelivery, WebhookEndpoint, db
from tests.conftest import fresh_app


def test_each_change_queues_one_event_and_a_bare_client_posts_it_signed(migrated_database):
    for app in fresh_app(
        migrated_database, SECRET_KEY=SECRET_KEY, APP_API_KEYS=(APP_KEY,), ALLOW_PRIVATE_WEBHOOK_URLS=True
    ):
        with receiving() as receiver:
            secret = prepare(app, receiver, connections=3)
            message_ids = queue_events(app, 7)
            with app.app_context():
                assert db.session.scalar(sa.select(WebhookEndpoint.url)) == receiver.url
                assert db.session.scalar(sa.select(sa.func.count()).select_from(WebhookDelivery)) == 7
                kinds = set(db.session.scalars(sa.select(OutboundEvent.type)))
            assert len(set(message_ids)) == 7 and kinds == {"connection.status_changed"}

            bodies = event_bodies(app, message_ids)
            for message_id, body in bodies:
                post_signed(receiver, secret, message_id, body)
            assert [message_id for _, message_id in receiver.taken()] == message_ids


def test_the_receiver_refuses_an_unsigned_post():
    with receiving() as receiver:
        assert isinstance(receiver, Receiver)
        answer = urllib3.request("POST", receiver.url, body=b"{}")
        assert answer.status == 400
        assert receiver.taken() == []


def test_a_run_has_the_worker_deliver_every_event_once_then_times_the_lag(migrated_database):
    result = outbound.run(migrated_database, events=12, trials=2, connections=5)

    assert result["bare_client"]["events"] == result["worker"]["events"] == 12
    assert result["worker"]["repeats"] == 0
    assert result["lag"]["trials"] == 2 and result["lag"]["median_ms"] > 0
    assert result["job_duration_ms"]["jobs"] == 12 + 2
    assert [row["met"] for row in result["table"]] != []
