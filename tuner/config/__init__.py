"""The configuration layer: the flat trial config's spec and resolution (spec.py), the builders
that turn a config into objects through the registries (build.py), and the objective's terms as
registry entries (terms.py). No Ray, no MLflow."""
