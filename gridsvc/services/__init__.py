"""Services: the use cases. Each owns its transaction and raises domain errors (gridsvc.errors)."""
