"""GET /v1/models and /v1/models/{name}: what each loaded model is and where it runs, and the bundles refused."""

from __future__ import annotations

from fastapi import APIRouter

from bundle.runtime import ModelRuntime
from service.deps import ServicesDep
from service.errors import ERROR_RESPONSES
from service.schemas import ModelInfo, ModelList, RefusedBundle

router = APIRouter(tags=["models"])


def model_info(runtime: ModelRuntime, default: str) -> ModelInfo:
    m = runtime.manifest
    return ModelInfo(name=runtime.name, default=runtime.name == default, version=m.version,
                     fingerprint=m.fingerprint, kind=m.kind, D=m.D, K=m.K, L0=m.L0, per_slot=m.per_slot,
                     partitions=m.partitions, gate=m.gate, formats=list(m.formats),
                     likelihood=m.likelihood, provider=runtime.provider, labels=m.labels,
                     thresholds=m.thresholds, feature_names=m.feature_names, evaluation=m.evaluation)


@router.get("/v1/models")
async def list_models(services: ServicesDep) -> ModelList:
    """Every loaded model, and the bundles refused at start or by the last reload (with the fingerprint of the
    version still served under that name, if any)."""
    registry = services.registry
    served = registry.models
    return ModelList(default=registry.default,
                     models=[model_info(r, registry.default) for _, r in sorted(served.items())],
                     refused=[RefusedBundle(name=n, error=why, serving=served[n].manifest.fingerprint if n in served
                                            else None) for n, why in sorted(registry.refused.items())])


@router.get("/v1/models/{name}", responses=ERROR_RESPONSES)
async def get_model(name: str, services: ServicesDep) -> ModelInfo:
    """One loaded model by name; 404 when it is not loaded."""
    registry = services.registry
    return model_info(registry.get(name), registry.default)
