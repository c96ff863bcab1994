"""The SDLGM in PyTorch: relaxations (`relax`), the generative model (`sdlgm`), its deterministic code
(`codes`), the supervised discriminative variant (`dis`) and the Gumbel-Softmax VAE baseline (`gsvae`)."""
