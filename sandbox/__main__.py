"""python -m sandbox --host 127.0.0.1 --port 8700 --seed 0 [--step-delay S]"""

from __future__ import annotations

import argparse
import signal
import threading

from werkzeug.serving import make_server

from . import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, create_sandbox, world_of
from .delivery import DEFAULT_BACKOFF
from .state import DISABLE_WEBHOOK_AFTER


def backoff(text: str) -> tuple[float, ...]:
    try:
        delays = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not comma-separated seconds: {text!r}") from None
    if any(delay < 0 for delay in delays):
        raise argparse.ArgumentTypeError("delays cannot be negative")
    return delays


def positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"not a positive whole number: {text!r}")
    return int(text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8700)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--step-delay", type=float, default=0.2)
    parser.add_argument("--page-size", type=int, default=500)
    parser.add_argument("--client-id", default=DEFAULT_CLIENT_ID)
    parser.add_argument("--client-secret", default=DEFAULT_CLIENT_SECRET)
    parser.add_argument(
        "--retry-backoff",
        type=backoff,
        default=DEFAULT_BACKOFF,
        help="seconds before each redelivery of a failed webhook, comma-separated (default 0.2,0.5,1)",
    )
    parser.add_argument(
        "--disable-webhook-after",
        type=positive,
        default=DISABLE_WEBHOOK_AFTER,
        help="failed deliveries in a row (each after all its retries) that disable a webhook (default %(default)s)",
    )
    args = parser.parse_args(argv)

    app = create_sandbox(
        seed=args.seed,
        client_id=args.client_id,
        client_secret=args.client_secret,
        step_delay=args.step_delay,
        page_size=args.page_size,
        retry_backoff=args.retry_backoff,
        disable_webhook_after=args.disable_webhook_after,
    )
    server = make_server(args.host, args.port, app, threaded=True)
    world_of(app).base_url = f"http://{args.host}:{server.port}"

    def stop(signum, frame):
        # shutdown() waits for serve_forever to return, so it cannot run on the serving thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    print(f"sandbox listening on http://{args.host}:{server.port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.server_close()
        world_of(app).close()


if __name__ == "__main__":
    main()
