"""Offline half of sdlgm: data (`datasets`, `tasks`), configs (`config`), the one training loop (`loop`),
training of any model kind (`trainer`), evaluation (`evaluate`, `bundle_eval`), export to an ONNX bundle
(`export`) and the `sdlgm` command line (`cli`)."""
