"""Asset definitions, one module per layer: ingest -> warehouse -> analytics -> images."""
