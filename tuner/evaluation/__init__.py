"""The evaluation layer: metrics (FID/KID through torch-fidelity, exact NLL), feature
extractors and plots. No Ray, no MLflow."""
