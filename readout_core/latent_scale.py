"""The one scale between image pixels and latent pixels."""

PIXELS_PER_LATENT = 8
"""Image pixels per latent pixel along each side in the SD1.5 / SDXL VAE (the tiny world,
which samples in pixel space, uses 1 where a factor is asked for)."""
