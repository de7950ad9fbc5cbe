"""The data layer: the dataset presets (Gaussian mixtures, 8x8 digits, CIFAR-10, image
folders). No Ray, no MLflow."""
