"""The bare endpoint every ratio is measured against.

A FastAPI app with one trivial `GET /bare` returning a small JSON document: no
middleware, no database, no templates. `python -m bench` serves it with the same
uvicorn settings and number of worker processes as the real app, in the same run,
so a ratio says what Undersigned costs on top of FastAPI + uvicorn on this machine.
"""

from __future__ import annotations

from fastapi import FastAPI


def create_bare_app() -> FastAPI:
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @app.get("/bare")
    def bare() -> dict[str, object]:
        # A plain `def`, like the app's endpoints: it runs in the same thread pool.
        return {"slug": "bare", "signature_count": 0, "status": "open"}

    return app


def main(argv: list[str] | None = None) -> None:
    """Serve the bare app with the uvicorn settings `undersigned serve` uses."""
    import argparse

    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    uvicorn.run(
        "bench.bare:create_bare_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        proxy_headers=False,
        forwarded_allow_ips=None,
        server_header=False,
        log_level=args.log_level,
    )


if __name__ == "__main__":
    main()
