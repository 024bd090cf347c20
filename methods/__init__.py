"""Built-in methods, one file each. Importing this package registers them (see `harness.plugin`)."""

from methods import ce  # noqa: F401
