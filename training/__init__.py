"""Offline half of sdlgm: data (`datasets`), configs (`config`), training (`trainer`), evaluation
(`evaluate`), export to an ONNX bundle (`export`) and the `sdlgm` command line (`cli`)."""
