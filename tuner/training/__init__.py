"""The trial layer: one trial's trainer and loop, its checkpoints, and the TIW
discriminator cache. No Ray, no MLflow (tuner/search/trainable.py runs it under Ray)."""
