"""Built-in methods, one file each. Importing this package registers them (see `harness.plugin`)."""

from methods import (  # noqa: F401  (registration)
    ce,
    channel_whitening,
    crt,
    la,
    la_posthoc,
    lort,
    lws,
    ncm,
    tau_norm,
)
