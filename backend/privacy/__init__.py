"""Privacy requests: GDPR Art. 15 access and Art. 17 erasure, end to end.

::

    intake.py     POST /v1/privacy/requests, .../verify, GET .../{id} (requester)
    ops.py        the operator console: queue, account search, assign/approve/deny/revoke
    jobs.py       the job queue and bounded worker pool; resumable after a crash
    export.py     the access job: build, check and release a package
    package.py    the streaming zip builder (layout: contract.package)
    delivery.py   signed, expiring links and GET /v1/privacy/downloads/{token}
    erasure.py    delete a subject's voice data and prove it is gone
    outbox.py     the simulated mail (bodies: templates/mail/), GET /v1/outbox (admin)
    state.py      statuses and the in-process state (progress, long-poll wake-ups)

Every state change appends to the hash-chained audit log in the same transaction.
"""

from __future__ import annotations

from aiohttp import web

from backend.keys import METRICS
from backend.privacy import delivery, intake, ops, outbox
from backend.privacy.erasure import erase
from backend.privacy.export import Exporter
from backend.privacy.jobs import job_pool
from backend.privacy.state import setup_state


def setup(app: web.Application) -> None:
    setup_state(app)
    app[METRICS].describe("overheard_privacy_jobs_total", "privacy jobs finished, by outcome")
    intake.setup(app)
    ops.setup(app)
    delivery.setup(app)
    app.router.add_routes(outbox.routes)
    app.cleanup_ctx.append(job_pool({"access": Exporter(), "erasure": erase}))
