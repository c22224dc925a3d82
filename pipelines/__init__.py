"""L/S ratio heatmap pipeline: the Dagster code location and everything it runs."""
