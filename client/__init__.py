"""A small client of the sdlgm service's native binary endpoints (docs/serving.md, "Native binary"):
httpx and numpy only, nothing of torch, FastAPI or the rest of this repo.

    from client import Client

    with Client("http://127.0.0.1:8000") as sdlgm:
        codes = sdlgm.encode(rows)      # (B, D) float32 rows -> Codes: the codes, their model and fingerprint
        x_hat = sdlgm.decode(codes)     # (B, D) float32 reconstructions in original units

`framing` owns the wire format of the bodies, `sdlgm` the client, its errors and its retries.
"""

from client.sdlgm import Client, Codes, FingerprintMismatch, Retry, ServiceError, Unavailable

__all__ = ["Client", "Codes", "FingerprintMismatch", "Retry", "ServiceError", "Unavailable"]
