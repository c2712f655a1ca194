"""Every 4xx and 5xx answers in the one JSON error shape."""
import pytest

from api.errors import ApiError


@pytest.fixture
def app_with_failing_routes(app):
    @app.get("/boom")
    def boom():
        raise RuntimeError("internal detail with a secret test-client-secret-do-not-log")

    @app.get("/refused")
    def refused():
        raise ApiError(409, "already_syncing", "A sync is running.", status="ALREADY_SYNCING")

    return app


def test_404_is_json(client):
    response = client.get("/no/such/page")
    assert response.status_code == 404
    assert response.get_json() == {
        "error": {"code": "not_found", "message": response.get_json()["error"]["message"]}
    }
    assert response.get_json()["error"]["message"]


def test_405_is_json_and_keeps_allow(client):
    response = client.post("/health")
    assert response.status_code == 405
    assert response.get_json()["error"]["code"] == "method_not_allowed"
    assert "GET" in response.headers["Allow"]


def test_unexpected_error_is_a_json_500_without_details(app_with_failing_routes, caplog):
    response = app_with_failing_routes.test_client().get("/boom")
    assert response.status_code == 500
    assert response.get_json() == {
        "error": {"code": "internal_error", "message": "The server failed to answer this request."}
    }
    assert "test-client-secret" not in response.get_data(as_text=True)


def test_api_error_carries_extra_fields(app_with_failing_routes):
    response = app_with_failing_routes.test_client().get("/refused")
    assert response.status_code == 409
    assert response.get_json() == {
        "error": {"code": "already_syncing", "message": "A sync is running."},
        "status": "ALREADY_SYNCING",
    }
