"""lens_jax: placeholder, filled in as modules land."""
