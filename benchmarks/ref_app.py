"""The bare FastAPI app that `make bench` (benchmarks/serve_bench.py) measures the service's single-vector
/encode against, served by the same uvicorn call as `python -m service` with one worker.

    python benchmarks/ref_app.py --model-dir models/kpi5g --port 8001 [--threads 1]

POST /encode takes the service's own request model (service.schemas.EncodeRequest: the same JSON body
and the same pydantic validation) and answers the service's response model (EncodeResponse, built by
service.inference.codes_out) from the same onnxruntime call (bundle.runtime.ModelRuntime.encode, the
same graphs and thread settings). So the ratio service / reference measures only what the service adds
around the same work: its middlewares (metrics, body guard, load shedding), dependencies, the batcher or
thread hop, its per-code metrics and its JSON parser. A reference without inference would instead count
the model's own time against the service. Everything else is left out: no middleware, no metrics, no
batching; the model runs in the route, on the event loop; the body is parsed by FastAPI's stock JSON
route. GET /readyz answers 200 once the bundle is loaded (uvicorn accepts connections only after the
lifespan has run), so cold start is measured the same way on both.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import uvicorn  # noqa: E402
from fastapi import FastAPI  # noqa: E402

from bundle.runtime import ModelRuntime, open_bundle  # noqa: E402
from service.inference import as_matrix, codes_out  # noqa: E402
from service.schemas import EncodeRequest, EncodeResponse  # noqa: E402


def create_app(bundle: Path, threads: int, max_batch: int = 1024) -> FastAPI:
    """The reference app over one bundle, loaded in its lifespan."""
    state: dict[str, ModelRuntime] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state["model"] = open_bundle(bundle, (threads, 1))
        yield

    app = FastAPI(lifespan=lifespan)

    @app.get("/readyz")
    async def readyz() -> dict[str, bool]:
        return {"ready": "model" in state}

    @app.post("/encode")
    async def encode(body: EncodeRequest) -> EncodeResponse:
        model = state["model"]
        m = model.manifest
        L_hat, counts = model.encode(as_matrix(body.rows(), m.D, max_batch))
        return EncodeResponse(model=model.name, fingerprint=m.fingerprint, stochastic=False,
                              codes=codes_out(L_hat, counts, m.code_space, body.format, m.entropy))

    return app


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model-dir", type=Path, required=True, help="bundle directory")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads (as SDLGM_INTRA_OP_THREADS)")
    args = p.parse_args(argv)
    uvicorn.run(create_app(args.model_dir.resolve(), args.threads), host=args.host, port=args.port,
                log_level="warning", http="h11")  # the service's protocol extends uvicorn's h11 one
    return 0


if __name__ == "__main__":
    sys.exit(main())
