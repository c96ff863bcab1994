"""The loaded models by served name, the bundles refused and why, and what readiness requires.

A bundle's served name is its directory name under SDLGM_MODELS_DIR. `load_registry` loads the bundles
SDLGM_MODELS lists (or every subdirectory holding a manifest.json), logs one line per refused bundle, and
never serves part of one. /readyz needs the default model and every model SDLGM_MODELS lists.

What a refusal says in answers (`refused`, /readyz's reasons, a 404) names no file path: /readyz is open
without a token (service.auth), so a path is cut to its last part (`without_paths`); the log line has it all.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

from bundle.manifest import MANIFEST_FILE, BundleError
from bundle.runtime import ModelRuntime, RunObserver, choose_providers, load_runtime
from service.errors import ServiceError
from service.settings import NAME_PATTERN, Settings

log = logging.getLogger("sdlgm.service")
PATH = re.compile(r"(?<![\w:/.~-])(?:~|\.{1,2})?(?:/[^\s/'\"(),;:]+)+/?")  # an absolute or ./ path in a message


def without_paths(message: str) -> str:
    """The message with each file path cut to its last part: "/app/models/x/manifest.json" -> "manifest.json"."""
    return PATH.sub(lambda m: m.group(0).rstrip("/").rsplit("/", 1)[-1] or "/", message)


@dataclass
class ModelRegistry:
    default: str
    required: list[str]
    models: dict[str, ModelRuntime] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)

    def get(self, name: str | None) -> ModelRuntime:
        """The named model, or the default when name is None; unknown -> 404 listing what is served."""
        key = self.default if name is None else name
        if key in self.models:
            return self.models[key]
        why = f" (refused at start: {self.refused[key]})" if key in self.refused else ""
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


def bundle_names(settings: Settings) -> list[str]:
    """SDLGM_MODELS, or every subdirectory of models_dir that holds a manifest."""
    listed = settings.model_names
    if listed is not None:
        return listed
    return sorted(p.name for p in settings.models_dir.iterdir() if (p / MANIFEST_FILE).is_file())


def load_registry(settings: Settings, observe: RunObserver) -> ModelRegistry:
    """Load every bundle; raises ProviderError when the provider setting cannot be honoured."""
    providers = choose_providers(settings.provider, settings.allow_cpu_fallback)
    strict = settings.provider == "cuda" and not settings.allow_cpu_fallback  # choose_providers put CUDA first
    threads = (settings.intra_op_threads, settings.inter_op_threads)
    listed = settings.model_names
    registry = ModelRegistry(settings.default_model, sorted({settings.default_model, *(listed or [])}))
    for name in bundle_names(settings):
        bundle_dir = settings.models_dir / name
        try:
            if not NAME_PATTERN.fullmatch(name):
                raise BundleError("directory name is not a model name (lower-case letters, digits, '_.-')")
            if not bundle_dir.is_dir():
                raise BundleError(f"no bundle directory {name!r} in SDLGM_MODELS_DIR")
            registry.models[name] = load_runtime(name, bundle_dir, providers, threads, strict, observe)
        except BundleError as exc:
            registry.refused[name] = without_paths(str(exc))
            log.error("refused bundle %r from %s: %s", name, bundle_dir, exc)
            continue
        m = registry.models[name]
        log.info("loaded model %r (version %s, fingerprint %s, D=%d K=%d L0=%d) on %s", name,
                 m.manifest.version, m.manifest.fingerprint[:12], m.manifest.D, m.manifest.K, m.manifest.L0,
                 m.provider)
    return registry
