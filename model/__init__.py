"""The SDLGM in PyTorch: relaxations (`relax`), the generative model (`sdlgm`), its deterministic code
(`codes`), the supervised variants (`dis`, `gen`, `con`), the counting model (`count`) and the
Gumbel-Softmax VAE baseline (`gsvae`). Every model keeps the contract of `family`; `registry` names the
kinds."""
