"""The loaded models by served name, the bundles refused and why, and what readiness requires; loading
them, at start and at each reload (service.reload).

A bundle's served name is its directory name under SDLGM_MODELS_DIR. `load_registry` loads the bundles
SDLGM_MODELS lists (or every subdirectory holding a manifest.json), logs one line per refused bundle, and
never serves part of one. Given the registry being served, it loads each bundle beside the one it may
replace and keeps the one served when the bundle on disk is refused or gone, for any reason (verification,
onnxruntime, I/O, a manifest nested too deeply, a symlink out of the models directory), so a bundle problem
never takes a model down nor stops the process. A bundle whose verified manifest equals the served one's
is not loaded again. /readyz needs the default model and every model SDLGM_MODELS lists.

What a refusal says in answers (`refused`, /readyz's reasons, a 404) names no file path: /readyz is open
without a token (service.auth), so a path is cut to its last part (`without_paths`); the log line has it all.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from bundle.manifest import MANIFEST_FILE, BundleError, inside, load_manifest
from bundle.runtime import ModelRuntime, RunObserver, choose_providers, load_runtime
from service.errors import ServiceError
from service.settings import NAME_PATTERN, Settings

log = logging.getLogger("sdlgm.service")
PATH = re.compile(r"(?<![\w:/.~-])(?:~|\.{1,2})?(?:/[^\s/'\"(),;:]+)+/?")  # an absolute or ./ path in a message


def without_paths(message: str, models_dir: Path | None = None) -> str:
    """The message as an open endpoint may show it: the models directory (as configured and resolved, spaces
    and relative paths included) named SDLGM_MODELS_DIR, then each other file path cut to its last part:
    "/app/models/x/manifest.json" -> "SDLGM_MODELS_DIR/x/manifest.json", "/etc/passwd" -> "passwd"."""
    if models_dir is not None:
        for shown in sorted({str(models_dir.resolve()), str(models_dir)}, key=len, reverse=True):
            message = message.replace(shown, "SDLGM_MODELS_DIR")
    return PATH.sub(lambda m: m.group(0).rstrip("/").rsplit("/", 1)[-1] or "/", message)


@dataclass
class ModelRegistry:
    default: str
    required: list[str]
    models: dict[str, ModelRuntime] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)  # by the last load or reload, with the cause

    def get(self, name: str | None) -> ModelRuntime:
        """The named model, or the default when name is None; unknown -> 404 listing what is served."""
        key = self.default if name is None else name
        if key in self.models:
            return self.models[key]
        why = f" (refused: {self.refused[key]})" if key in self.refused else ""
        served = ", ".join(sorted(self.models)) or "none"
        raise ServiceError(404, "unknown_model", f"model {key!r} is not loaded{why}; loaded models: {served}")

    def not_ready(self) -> list[str]:
        """Why /readyz answers 503; empty when ready."""
        if not self.models:
            return ["no model is loaded"]
        return [f"model {n!r} is not loaded: {self.refused.get(n, 'no such bundle')}"
                for n in self.required if n not in self.models]

    def by_fingerprint(self, fingerprint: str) -> str | None:
        return next((n for n, m in self.models.items() if m.manifest.fingerprint == fingerprint), None)


@dataclass
class Loading:
    """What one load pass did: the registry to serve, the runtimes it loaded (new names and replacements),
    the ones they replace, the names left as they were, and, when the bundles could not even be listed,
    why (the registry is then the previous one whole)."""

    registry: ModelRegistry
    loaded: dict[str, ModelRuntime] = field(default_factory=dict)
    replaced: dict[str, ModelRuntime] = field(default_factory=dict)
    unchanged: list[str] = field(default_factory=list)
    error: str | None = None


def bundle_names(settings: Settings) -> list[str]:
    """SDLGM_MODELS, or every subdirectory of models_dir that holds a manifest, but those whose name starts with
    a dot (a bundle being staged, docs/reload.md)."""
    listed = settings.model_names
    if listed is not None:
        return listed
    return sorted(p.name for p in settings.models_dir.iterdir()
                  if not p.name.startswith(".") and (p / MANIFEST_FILE).is_file())


def describe(exc: BaseException) -> str:
    """A refusal's cause: a BundleError's own text, any other exception's type and text."""
    return str(exc) if isinstance(exc, BundleError) else f"{type(exc).__name__}: {exc}"


def load_registry(settings: Settings, observe: RunObserver, served: ModelRegistry | None = None) -> Loading:
    """Load every bundle, beside the registry served (None at start); raises ProviderError when the provider
    setting cannot be honoured. A name served before and gone from the directory keeps being served."""
    providers = choose_providers(settings.provider, settings.allow_cpu_fallback)
    strict = settings.provider == "cuda" and not settings.allow_cpu_fallback  # choose_providers put CUDA first
    threads = (settings.intra_op_threads, settings.inter_op_threads)
    served = served or ModelRegistry(settings.default_model, [])
    registry = ModelRegistry(settings.default_model, sorted({settings.default_model, *(settings.model_names or [])}))
    try:
        names = sorted({*bundle_names(settings), *served.models})
    except Exception as exc:  # the models directory itself is unreadable or gone: nothing changes
        error = f"cannot list the bundles of {settings.models_dir}: {describe(exc)}"
        log.error("reload failed, every model is kept as served: %s", error)
        return Loading(served, error=error)
    loading = Loading(registry)
    root = settings.models_dir
    for name in names:
        bundle_dir = root / name
        old = served.models.get(name)
        try:
            if not NAME_PATTERN.fullmatch(name):
                raise BundleError("directory name is not a model name (lower-case letters, digits, '_.-')")
            if not bundle_dir.is_dir():
                raise BundleError(f"no bundle directory {name!r} in SDLGM_MODELS_DIR")
            inside(bundle_dir, root)
            if old is not None and load_manifest(bundle_dir, root) == old.manifest:
                registry.models[name] = old
                loading.unchanged.append(name)
                continue
            runtime = load_runtime(name, bundle_dir, providers, threads, strict, observe, root,
                                   settings.max_run_rows)
        except Exception as exc:  # anything a bundle can raise (RecursionError, OSError, onnxruntime's) refuses it
            why = describe(exc)
            registry.refused[name] = without_paths(why, root)
            if old is None:
                log.error("refused bundle %r from %s: %s", name, bundle_dir, why)
            else:
                registry.models[name] = old
                log.error("refused bundle %r from %s: %s; still serving version %s (fingerprint %s)", name,
                          bundle_dir, why, old.manifest.version, old.manifest.fingerprint[:12])
            continue
        registry.models[name] = loading.loaded[name] = runtime
        if old is not None:
            loading.replaced[name] = old
        m = runtime.manifest
        log.info("loaded model %r (version %s, fingerprint %s, D=%d K=%d L0=%d) on %s%s", name, m.version,
                 m.fingerprint[:12], m.D, m.K, m.L0, runtime.provider,
                 "" if old is None else f", replacing version {old.manifest.version} "
                 f"(fingerprint {old.manifest.fingerprint[:12]})")
    return loading
