"""Health, metrics and the OpenAPI document: routes anyone may call."""

from __future__ import annotations

from aiohttp import web

from backend.http import Routes
from backend.ingest.stream import budget_of
from backend.keys import METRICS, STORE
from backend.openapi import build_spec, document

routes = Routes()

document("GET", "/healthz", "Health: the store answers", roles=("anyone",), tag="meta",
         response_schema={"type": "object", "required": ["status"], "properties": {
             "status": {"type": "string", "enum": ["ok", "degraded"]},
             "writer_queue": {"type": "integer"},
             "problem": {"type": "string"}}})
document("GET", "/metrics", "Prometheus text: utterances, bytes, rejects, writer batches",
         roles=("anyone",), content_type="text/plain", response_schema={"type": "string"},
         tag="meta")
document("GET", "/openapi.json", "This OpenAPI document", roles=("anyone",), tag="meta")


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return web.json_response(await health(request.app))


async def health(app: web.Application) -> dict[str, object]:
    """``ok`` when the store answers and its writer has not failed, else ``degraded``."""
    store = app[STORE]
    ok = await store.read(lambda db: db.execute("SELECT 1").fetchone()[0] == 1)
    body: dict[str, object] = {"status": "ok" if ok and store.failed is None else "degraded",
                               "writer_queue": store.queue_depth()}
    if store.failed is not None:
        body["problem"] = str(store.failed)  # reads work; writes are refused
    return body


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    return web.Response(text=metrics_text(request.app), content_type="text/plain",
                        charset="utf-8", headers={"X-Content-Type-Options": "nosniff"})


def metrics_text(app: web.Application) -> str:
    """Every counter and gauge as Prometheus text."""
    store = app[STORE]
    m = app[METRICS]
    budget = budget_of(app)
    return m.render(
        gauges={
            "overheard_ingest_audio_bytes_in_flight": budget.used,
            "overheard_ingest_audio_bytes_in_flight_max": budget.high_water,
            "overheard_ingest_audio_budget_bytes": budget.cap,
            "overheard_ingest_audio_budget_waits_total": budget.waits,
            "overheard_writer_queue_depth": store.queue_depth(),
            "overheard_writer_transactions_total": store.stats.transactions,
            "overheard_writer_writes_total": store.stats.writes,
            "overheard_writer_wal_syncs_total": store.stats.syncs,
            "overheard_writer_checkpoints_total": store.stats.checkpoints,
        },
        histograms={"overheard_writer_batch_size": dict(store.stats.batch_sizes or {})},
    )


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return web.json_response(build_spec(request.app))


def setup(app: web.Application) -> None:
    m = app[METRICS]
    m.describe("overheard_writer_queue_depth", "writes waiting for the writer thread")
    m.describe("overheard_writer_batch_size", "writes committed per transaction")
    m.describe("overheard_writer_wal_syncs_total",
               "fdatasync calls on the WAL before answering (each covers one or more batches)")
    m.describe("overheard_writer_checkpoints_total",
               "WAL checkpoints run by the background checkpointer")
    m.describe("overheard_ingest_audio_bytes_in_flight",
               "PCM bytes of finished utterances waiting for their commit, all streams")
    m.describe("overheard_ingest_audio_bytes_in_flight_max", "most PCM bytes ever in flight")
    m.describe("overheard_ingest_audio_budget_bytes",
               "cap on PCM bytes in flight (max_audio_in_flight_bytes)")
    m.describe("overheard_ingest_audio_budget_waits_total",
               "times a device stream stopped reading to wait for room under the cap")
    app.router.add_routes(routes)
