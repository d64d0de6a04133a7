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
