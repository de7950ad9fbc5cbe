"""Diffusion-model core: noise densities, parameterisations, backbones, weightings, samplers,
losses. Import the submodules directly (``from models.schedules import CosineDensity``)."""
