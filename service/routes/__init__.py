"""One module per route group; `ROUTERS` is what the app includes."""

from __future__ import annotations

from service.routes import decode, encode, health, metrics, models, predict, reload, status, v2

ROUTERS = [encode.router, decode.router, predict.router, models.router, health.router, metrics.router, status.router,
           reload.router, v2.router]
