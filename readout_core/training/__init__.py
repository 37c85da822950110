"""Training readout heads: from a dataset folder to a head file.

- `datasets`: reading the dataset folders (layouts documented in the README).
- `feature_extraction`, `feature_sets`: U-Net features of the examples, with any base model
  (a `FeatureSource`), kept in a cache file.
- `tasks`: what a head learns from (spatial, appearance / identity, correspondence losses).
- `loop`: `train_head` with the released recipes, checkpoints and exact resume.
- `from_folder`: one call from a folder to a trained head (the node and the CLI use it).
- `cli`: ``python -m readout_core train``.

Modules here import `heads`, the top-level shared pieces and each other; a base model comes
in as a `FeatureSource` (from `diffusers_adapter` or the host adapter), never imported here
except by `cli`, which loads a diffusers pipeline on demand. Importing the package loads nothing.
"""
