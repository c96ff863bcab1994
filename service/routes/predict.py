"""POST /predict: feature vectors -> label probabilities and predicted labels (supervised bundles)."""

from __future__ import annotations

from fastapi import APIRouter

from service.batching import Output
from service.deps import CallDep
from service.errors import ERROR_RESPONSES, ServiceError
from service.fastjson import FastJSONRoute
from service.inference import as_matrix
from service.schemas import Prediction, PredictRequest, PredictResponse

router = APIRouter(route_class=FastJSONRoute, tags=["labels"])


@router.post("/predict", responses=ERROR_RESPONSES)
async def predict(body: PredictRequest, call: CallDep) -> PredictResponse:
    """Label probabilities P(label in code), the labels at or over the manifest's thresholds and the
    predicted count, from the supervised model named by `?model=`."""
    model = call.model
    m = model.manifest
    if m.labels is None or m.thresholds is None:
        supervised = sorted(n for n, r in call.registry.models.items() if r.manifest.supervised)
        raise ServiceError(422, "unsupported", f"model {model.name!r} has no labels (likelihood {m.likelihood}); "
                           f"/predict needs a supervised model: {', '.join(supervised) or 'none is loaded'}")
    labels, thresholds = m.labels, m.thresholds
    x = as_matrix(body.rows(), m.D, call.settings.max_batch)

    def finish(outputs: Output) -> list[Prediction]:
        probs, L_hat = outputs
        return [Prediction(labels=[lb for lb, p, t in zip(labels, row, thresholds, strict=True) if p >= t],
                           probabilities=dict(zip(labels, row.tolist(), strict=True)), L_hat=int(n))
                for row, n in zip(probs, L_hat, strict=True)]

    out = await call.infer.run(model, "predict", x, finish)
    call.metrics.model(model.name).batch_size("/predict").observe(len(x))
    return PredictResponse(model=model.name, fingerprint=m.fingerprint, labels=labels, predictions=out)
