"""The configuration layer: the flat trial config's spec and resolution (spec.py) and the
builders that turn a config into objects through the registries (build.py). No Ray, no MLflow."""
