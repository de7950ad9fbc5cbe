"""MLflow tracking: the store (store.py), the Ray Tune callback that records every trial
(callback.py) and what a reviewer reads (review.py)."""
