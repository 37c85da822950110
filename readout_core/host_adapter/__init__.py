"""HOST ADAPTER — the one part of `readout_core` that knows ComfyUI.

Nothing else in the core imports this package; the node wrappers in ``nodes/`` do.
It maps the host's ``UNetModel`` (``comfy.ldm.modules.diffusionmodules.openaimodel``)
onto the core's decoder layout and runs guidance, inversion and reference sampling
through the host's own samplers:

- `unet`: layout, feature modules, timestep embedding, autograd safety, checkpointing;
- `guided_sampling`: `HostGuidance`, the wrappers that guide any sampler;
- `readout`: a head's readout of a LATENT (Readout Preview);
- `inversion`: DDIM inversion of a LATENT;
- `reference_sampling`: sampling a reference and its edits side by side;
- `training_source`: a host MODEL + VAE as a `FeatureSource` (Train Readout Head).
"""

from .guided_sampling import BACKWARD_MEMORY_FACTOR, WRAPPER_KEY, HostGuidance, guided_clone, show_text_under_node
from .readout import latent_features, readout_of_latent
from .unet import (
    check_head_fits,
    checkpointed_layers,
    control_modules,
    find_diffusion_model,
    head_on,
    host_decoder_layout,
    host_feature_modules,
    host_head_embedding,
    make_autograd_safe,
)

__all__ = [
    "BACKWARD_MEMORY_FACTOR", "WRAPPER_KEY", "HostGuidance", "guided_clone", "show_text_under_node", "latent_features",
    "readout_of_latent", "check_head_fits",
    "checkpointed_layers", "control_modules", "find_diffusion_model", "head_on", "host_decoder_layout",
    "host_feature_modules", "host_head_embedding", "make_autograd_safe",
]
