"""`/metrics`, `/healthz` and `/readyz` of a trading process. Liveness says the process serves
requests; readiness says it may trade: ledger, Redis, private stream and risk guard all fine."""

import asyncio
from collections.abc import Callable

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from methtrader.ops.health import DOWN, Check

Checks = Callable[[], dict[str, Check]]


def create_ops_app(registry: CollectorRegistry, checks: Checks) -> FastAPI:
    """The app; `checks` runs in a worker thread on each `/readyz` (it may block briefly)."""
    app = FastAPI(title="methtrader ops", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        try:
            results = await asyncio.wait_for(asyncio.to_thread(checks), timeout=5)
        except Exception as exc:  # a check that hangs or breaks is a failed check
            results = {"checks": Check(DOWN, f"{type(exc).__name__}: {exc}")}
        ready = all(c.passes for c in results.values())
        report = {name: {"status": c.status, "detail": c.detail, **c.data} for name, c in results.items()}
        body = {"status": "ready" if ready else "not_ready", "checks": report}
        return JSONResponse(body, status_code=200 if ready else 503)

    return app
