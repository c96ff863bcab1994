"""The bundle: the contract between training and serving, torch-free.

`manifest` is the one pydantic model of manifest.json, `codes` the deterministic code and the code
formats in numpy, `runtime` a verified bundle loaded into onnxruntime. `training/` writes bundles with
these modules and `service/` serves them; neither imports the other.
"""

__version__ = "0.1.0"  # the product's version (pyproject reads it; the service reports it)
