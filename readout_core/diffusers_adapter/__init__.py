"""DIFFUSERS ADAPTER: the only part of the core that knows diffusers (as `host_adapter` is the
only part that knows ComfyUI).

- `feature_modules`: where a diffusers U-Net's decoder features and time embedding are.
- `feature_source`: a diffusers U-Net as a `FeatureSource` (training, the tiny world).
- `pipelines`: loading a Stable Diffusion 1.5 / SDXL folder, and building models from configs.
- `guided_ddim`: the released guidance loop on a diffusers U-Net, without a host.

Modules here may import diffusers (inside functions, so that importing them stays cheap) and
the rest of the core; nothing outside this package imports diffusers.
"""
