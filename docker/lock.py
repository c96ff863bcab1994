"""Pin the serving images' Python packages: `python docker/lock.py` (or `make lock`) resolves the `serve` and
`gpu` extras of pyproject.toml for each image's interpreter and platform with pip's resolver (no install) and
writes `docker/serve.lock` and `docker/gpu.lock`, one `name==version` a line.

The images, the air-gapped wheelhouse and `.venv-serve` install from these files alone, so a build is the
same until someone refreshes them. Refresh after changing an extra, or to take upstream fixes, and commit
the result with the image change it belongs to.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Target:
    extra: str
    python: str  # the image's interpreter, major.minor
    glibc_minor: int  # the image's glibc 2.N: wheels for manylinux_2_17 .. 2_N qualify
    base: str  # what the image is built on, for the file's header


TARGETS = (
    Target("serve", "3.11", 36, "docker/Dockerfile: Debian bookworm's python3 (3.11, glibc 2.36)"),
    Target("gpu", "3.12", 39, "docker/Dockerfile.gpu: Ubuntu 24.04's python3 (3.12, glibc 2.39)"),
)


def requirements(extra: str) -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return list(project["optional-dependencies"][extra])


def resolve(target: Target, machine: str = "x86_64") -> list[tuple[str, str]]:
    """(name, version) of every package pip would install for the target, sorted by name."""
    platforms = [f"manylinux_2_{n}_{machine}" for n in range(target.glibc_minor, 16, -1)]
    platforms.append(f"manylinux2014_{machine}")
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
               "--report", str(report), "--only-binary=:all:", "--python-version", target.python,
               "--implementation", "cp", *[a for p in platforms for a in ("--platform", p)],
               *requirements(target.extra)]
        subprocess.run(cmd, check=True)
        installs = json.loads(report.read_text())["install"]
    return sorted((i["metadata"]["name"].lower().replace("_", "-"), i["metadata"]["version"]) for i in installs)


def lock_text(target: Target, pins: Sequence[tuple[str, str]]) -> str:
    head = [f"# The `{target.extra}` extra of pyproject.toml resolved for {target.base}.",
            "# Written by `make lock` (python docker/lock.py); do not edit by hand."]
    return "\n".join([*head, *(f"{n}=={v}" for n, v in pins)]) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--extra", choices=[t.extra for t in TARGETS], action="append",
                   help="lock only this extra (default: all)")
    args = p.parse_args(argv)
    for target in TARGETS:
        if args.extra and target.extra not in args.extra:
            continue
        path = ROOT / "docker" / f"{target.extra}.lock"
        path.write_text(lock_text(target, resolve(target)))
        sys.stdout.write(f"wrote {path.relative_to(ROOT)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
