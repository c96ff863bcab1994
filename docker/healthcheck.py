"""Container health probe: exit 0 when the service answers GET /readyz with 200, else 1.

Standard library only, so the image needs no curl; Docker's HEALTHCHECK and compose both call it.
"""

import os
import sys
import urllib.request

url = f"http://127.0.0.1:{os.environ.get('SDLGM_PORT', '8000')}/readyz"
try:
    with urllib.request.urlopen(url, timeout=3) as response:
        sys.exit(0 if response.status == 200 else 1)
except OSError as exc:
    sys.stderr.write(f"{url}: {exc}\n")
    sys.exit(1)
