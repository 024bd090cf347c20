"""Built-in methods, one file each. Importing this package registers them (see `harness.plugins.loading`)."""

from methods import (  # noqa: F401  (registration)
    balanced_softmax,
    cb,
    ce,
    ce_drw,
    channel_whitening,
    crt,
    focal,
    glmc,
    la,
    la_posthoc,
    ldam_drw,
    lort,
    lws,
    mislas,
    mixup,
    ncm,
    paco,
    tau_norm,
    wb,
)
