"""``python -m lens_jax ...``: see :mod:`lens_jax.cli`."""
import sys

from lens_jax.cli import main

if __name__ == "__main__":
    sys.exit(main())
