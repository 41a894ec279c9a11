"""The HOI video diffusion model: config, DiT, condition encoders, flow matching, VAE, checkpoints.

Importing this package imports torch; the CLI imports it lazily.
"""
