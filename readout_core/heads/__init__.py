"""Readout heads: the network, what a head is, its files, the published heads and previews.

- `network`: `ReadoutHead`, the per-layer bottlenecks + softmax mixing the authors released.
- `info`: `HeadInfo`, a head's architecture numbers and metadata, checked field by field.
- `files`, `weights`, `pt_container`, `safetensors_header`: reading (checked before anything
  is allocated) and writing head files, published ``.pt`` and the pack's ``.safetensors``.
- `published`, `download`: the authors' heads and a safe download of them.
- `preview`: readouts rendered as pictures.

Modules here import the top-level shared pieces (`errors`, `safe_json`, `value_ranges`) and
each other; never training, diffusers or the host. Importing the package itself loads nothing.
"""
