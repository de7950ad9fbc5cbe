"""The search driver: the CLI, the plan and its checks, the Ray instance, the stages (search,
confirmation), importances and results. May import tuner.tracking.callback, never the reverse."""
