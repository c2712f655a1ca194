from datetime import timedelta

from models import Job, db
from models.base import utcnow
from tests.conftest import make_app


def test_health_with_an_empty_queue(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.get_json() == {
        "status": "ok",
        "database": "ok",
        "queue": {"due": 0, "scheduled": 0, "running": 0, "dead": 0, "oldest_due_age_s": 0.0},
    }


def test_health_counts_the_queue(app, client):
    now = utcnow()
    with app.app_context():
        db.session.add_all(
            [
                Job(kind="sync", status="queued", run_at=now - timedelta(seconds=90)),
                Job(kind="sync", status="queued", run_at=now - timedelta(seconds=5)),
                Job(kind="sync", status="queued", run_at=now + timedelta(hours=1)),  # not due yet
                Job(kind="sync", status="running", item_id="item-1"),
                Job(kind="sync", status="dead"),
                Job(kind="sync", status="done"),
            ]
        )
        db.session.commit()
    queue = client.get("/health").get_json()["queue"]
    assert (queue["due"], queue["scheduled"], queue["running"], queue["dead"]) == (2, 1, 1, 1)
    assert 90 <= queue["oldest_due_age_s"] < 120


def test_health_needs_no_authentication_and_shows_no_secret(client):
    body = client.get("/health").get_data(as_text=True)
    for secret in ("test-secret-key", "test-client-secret", "test-webhook-secret"):
        assert secret not in body


def test_health_when_sqlite_cannot_be_opened(tmp_path):
    app = make_app(f"sqlite:///{tmp_path / 'missing-dir' / 'x.db'}")
    response = app.test_client().get("/health")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "error" and body["database"] == "error"
    assert body["error"]["code"] == "database_unavailable"


def test_health_when_postgresql_refuses_connections():
    # Port 9 (discard) on loopback has nothing listening: the connection is refused at once.
    app = make_app("postgresql+psycopg://nobody@127.0.0.1:9/none")
    response = app.test_client().get("/health")
    assert response.status_code == 503
    assert response.get_json()["status"] == "error"
