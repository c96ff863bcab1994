"""Container health probe: exit 0 when the service answers GET /readyz with 200, else 1.

Standard library only, so the image needs no curl; Docker's HEALTHCHECK and compose both call it. With
SDLGM_TLS_CERTFILE set it asks over HTTPS without checking the certificate: it speaks to this container's
own loopback, for whatever host name the certificate was issued. /readyz needs no token.
"""

import os
import ssl
import sys
import urllib.request

tls = bool(os.environ.get("SDLGM_TLS_CERTFILE"))
url = f"{'https' if tls else 'http'}://127.0.0.1:{os.environ.get('SDLGM_PORT', '8000')}/readyz"
context = None
if tls:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
try:
    with urllib.request.urlopen(url, timeout=3, context=context) as response:
        sys.exit(0 if response.status == 200 else 1)
except OSError as exc:
    sys.stderr.write(f"{url}: {exc}\n")
    sys.exit(1)
