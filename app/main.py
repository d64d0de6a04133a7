"""create_app(settings): the whole web application, wired once: the Database, the
in-process mail worker, middleware, error handlers and each domain's routers."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from urllib.parse import urlsplit

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session
from starlette.responses import Response

from app import templating, urls
from app.abuse import dashboard as abuse_dashboard
from app.abuse import service as abuse
from app.abuse import web as abuse_web
from app.config import STATIC_DIR, MailBackend, Settings
from app.db import Database
from app.jobs import backlog, run_worker
from app.keycheck import check_secret_key
from app.letters import api as letters_api
from app.letters import dashboard as letters_dashboard
from app.letters import feed_pages as letters_feed
from app.letters import images, looks
from app.letters import pages as letters_pages
from app.letters import share as letters_share
from app.letters import team as letters_team
from app.mail.backends import make_backend
from app.organizers import pages as organizers_pages
from app.organizers.web import session_cookie_name
from app.privacy import router as privacy_router
from app.signatures import api as signatures_api
from app.signatures import dashboard as signatures_dashboard
from app.signatures import delivery as signatures_delivery
from app.signatures import manage_pages as signatures_manage
from app.signatures import pages as signatures_pages
from app.signlog import api as signlog_api
from app.signlog import pages as signlog_pages
from app.signlog import receipt_pages as signlog_receipts
from app.signlog import well_known as signlog_well_known
from app.updates import pages as updates_pages
from app.web import dev, errors, ratelimit
from app.web import metrics as web_metrics
from app.web.cache import PublicCacheMiddleware
from app.web.compression import CompressionMiddleware
from app.web.cors import PublicApiCors
from app.web.locale import QUERY as LANGUAGE_QUERY
from app.web.locale import LocaleMiddleware
from app.web.security import (
    BodyLimitMiddleware,
    HeaderLimitMiddleware,
    RelativeSlashRedirect,
    SecurityMiddleware,
)
from app.web.static import HashedStaticFiles, StaticManifest

log = logging.getLogger("undersigned")
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "testserver"}


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    database = Database(settings.database_url, pool_size=settings.database_pool_size)
    if settings.database_read_url:  # public reads from a replica (PublicReadSession)
        database.use_read_url(settings.database_read_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # A process with another SECRET_KEY than the database's refuses to start.
        check_secret_key(database, settings)
        stop = threading.Event()
        worker = None
        if settings.run_mail_worker:
            worker = threading.Thread(
                target=run_worker,
                args=(database, make_backend(settings)),
                kwargs={"settings": settings, "stop": stop},
                name="mail-worker",
                daemon=True,
            )
            worker.start()
            log.info("mail worker running in-process (%s backend)", settings.mail_backend)
        try:
            yield
        finally:
            stop.set()
            if worker is not None:
                worker.join(timeout=30)
            database.dispose()

    app = FastAPI(
        title="Undersigned",
        version="1",
        summary="Open letters: sign, confirm by email, count exactly.",
        openapi_url="/api/v1/openapi.json",
        docs_url=None,  # Swagger UI and ReDoc load scripts from a CDN
        redoc_url=None,
        lifespan=lifespan,
        # Starlette's trailing-slash redirect builds Location from the Host header;
        # RelativeSlashRedirect (below) does the same job with a relative Location.
        redirect_slashes=False,
    )
    app.state.settings = settings
    app.state.database = database

    # Our own body limit, not FastAPI's max_body_size: that one answers a bare
    # text/plain 413 outside every handler and middleware (no page, no headers).
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_request_bytes,
        larger=(
            # A header image (app/letters/looks.py), with room for the form around it.
            (looks.UPLOAD_PREFIX, images.MAX_UPLOAD_BYTES + 64 * 1024),
            ("/dashboard/", settings.max_dashboard_request_bytes),
        ),
    )
    app.add_middleware(HeaderLimitMiddleware)  # inside SecurityMiddleware: its 431 gets the headers
    app.add_middleware(SecurityMiddleware, secure=settings.secure_cookies)
    # Outside SecurityMiddleware: sees the final headers, CSRF cookie included (BREACH, D87).
    app.add_middleware(CompressionMiddleware)
    # Outside compression: keeps public answers as they leave, gzipped or not (D93).
    app.add_middleware(
        PublicCacheMiddleware,
        seconds=settings.public_cache_seconds,
        bypass_cookies=(session_cookie_name(settings), signatures_pages.THANKS_COOKIE),
        router=app.router,  # the key keeps the query parameters routes read (D192)
        also_read=(LANGUAGE_QUERY,),
    )
    # Outside the cache: each request's language, which the cache keys on (D111).
    app.add_middleware(LocaleMiddleware, secure=settings.secure_cookies)
    # Outside the cache: its answers and 304s get the header too (D101).
    app.add_middleware(PublicApiCors)
    # Outermost: times every answer and gives each request its id (X-Request-ID, logs).
    app.add_middleware(web_metrics.RequestMetricsMiddleware)
    app.state.backlog_probe = partial(backlog, database)  # read at each /metrics scrape
    errors.install(app)
    errors.document_api(app)  # /api/v1/openapi.json: /api/v1 only, errors as ErrorOut
    ratelimit.install(app, settings, recorder=partial(_record_refusal, settings))
    # FastAPI tries the included routers in this order, each one's routes in turn, and
    # matches twice per request (to choose, then to handle): the hot JSON routes (sign,
    # confirm, tally) come first, so they are found after a few tries, not forty (D190).
    # No page path starts with /api/, so the order changes no route's answer.
    for router in (
        letters_api.router,
        signatures_api.router,
        signlog_api.router,
        letters_pages.router,
        letters_share.router,
        letters_feed.router,
        looks.router,
        signatures_pages.router,
        signatures_manage.router,
        signlog_pages.router,
        signlog_receipts.router,
        signlog_well_known.router,
        organizers_pages.router,
        letters_dashboard.router,
        letters_team.router,
        signatures_dashboard.router,
        signatures_delivery.router,
        updates_pages.router,
        abuse_dashboard.router,
        abuse_web.router,
        privacy_router,
        web_metrics.router,
    ):
        app.include_router(router)
    if settings.mail_backend == MailBackend.DEV:
        app.include_router(dev.router)
        if urlsplit(settings.base_url).hostname not in LOCAL_HOSTS:
            log.warning(
                "MAIL_BACKEND is dev but BASE_URL (%s) is not local: every email, with its "
                "confirmation link, is readable by anyone at %s. Use MAIL_BACKEND=smtp.",
                settings.base_url,
                urls.dev_mailbox_url(settings.base_url),
            )
    # Content-hashed names, from the installed static/ (D86).
    manifest = StaticManifest(STATIC_DIR)
    templating.use_static_urls(manifest.url)
    app.state.static_manifest = manifest
    app.mount("/static", HashedStaticFiles(manifest), name="static")
    app.router.default = RelativeSlashRedirect(app.router)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> Response:
        try:
            database.ping()
        except Exception as exc:
            log.warning("health check failed: %s", exc)
            return JSONResponse({"status": "error", "database": "unreachable"}, 503)
        return JSONResponse({"status": "ok", "database": "ok"})

    return app


def _record_refusal(settings: Settings, session: Session, refusal: ratelimit.Refusal) -> None:
    abuse.record_rate_limited(
        session, secret_key=settings.secret, ip=refusal.ip, letter_slug=refusal.letter_slug
    )


def create_app_from_env() -> FastAPI:
    """For `uvicorn --factory` (used by `undersigned serve --workers N`)."""
    return create_app(Settings())
