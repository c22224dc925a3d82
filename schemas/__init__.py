"""pandera schemas: every frame passes one of these before it is written to the warehouse."""
