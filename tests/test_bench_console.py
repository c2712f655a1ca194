"""The console benchmark's machinery on a tiny volume, so that it cannot rot: the seed writes what it
says on both engines, and every console page the app has is rendered on both databases (each answer
a 200, or the benchmark stops). No timing is asserted."""

from __future__ import annotations

import sqlalchemy as sa

from bench import console
from bench.console import PAGES, Volume, next_link, pattern_of, seed
from models import Account, Connection, Job, ReportedStatus, SyncRun, User, WebhookDelivery, WebhookEvent, db

TINY = Volume(connections=150, events=600)


def count(model, *conditions) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(model).where(*conditions))


def test_the_seed_writes_the_volume_asked_for_and_names_records_the_pages_open(console_app):
    with console_app.app_context():
        targets = seed(TINY)
        assert count(User) == count(Connection) == count(ReportedStatus) == TINY.connections
        assert count(WebhookEvent) == TINY.events
        assert count(SyncRun) == TINY.runs
        assert count(Job) == TINY.jobs
        assert count(WebhookDelivery) == TINY.deliveries
        assert count(Job, Job.status == "dead") > 0
        assert count(WebhookEvent, WebhookEvent.status == "failed") > 0
        stuck = db.session.get(ReportedStatus, targets.connection_id)
        assert stuck is not None and stuck.sync_status == "CREDENTIALS_REQUIRED"
        connection = db.session.get(Connection, targets.connection_id)
        assert connection is not None and connection.item_id == targets.item_id
        assert db.session.get(User, connection.user_id).email == targets.email
        assert count(Account, Account.connection_id == targets.connection_id) == 2
        assert db.session.get(Job, targets.job_id).status == "dead"
        assert db.session.get(WebhookEvent, targets.event_id).status == "failed"
        # Ids were given: new rows still get ids of their own.
        db.session.add(User(email="after-the-seed@example.com"))
        db.session.commit()


def test_every_console_page_of_the_app_is_rendered_on_both_databases(migrated_database):
    result = console.run(migrated_database, TINY, renders=2)

    assert result["failed"] == {}
    measured = set(result["pages"])
    assert "/console/" in measured
    for page in PAGES:
        assert page.name in measured or pattern_of(page) in result["not_registered"]
    for figures in result["pages"].values():
        for database in ("large", "small"):
            assert figures[database]["p50_ms"] > 0
            assert figures[database]["statements"] > 0
    assert [row["measure"] for row in result["table"]][0].startswith("seeding 150 connections, 600 events")


def test_a_page_that_does_not_render_is_reported_as_failed_and_not_measured(migrated_database, monkeypatch):
    broken = console.Page("/console/a page no app has", "/console/a-page-no-app-has/{job_id}")
    monkeypatch.setattr(console, "PAGES", (console.PAGES[0], broken))
    monkeypatch.setattr(console, "registered", lambda app, route: True)

    result = console.run(migrated_database, TINY, renders=1)

    assert set(result["pages"]) == {"/console/"}
    assert "answered 404" in result["failed"][broken.name]
    assert {"measure": f"{broken.name}: not rendered", "met": False}.items() <= result["table"][2].items()


def test_a_second_page_is_the_first_pages_link_with_a_cursor():
    page = '<a href="/console/jobs/7">7</a> <a href="?state=dead&amp;after=abc.def">Next page</a>'
    assert next_link("/console/jobs?state=dead", page) == "/console/jobs?state=dead&after=abc.def"
    assert next_link("/console/jobs", '<a href="/console/jobs/7">7</a>') is None
