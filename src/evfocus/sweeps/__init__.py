"""wandb sweeps without a wandb server: the same YAML, proposed by wandb's open-source ``sweeps`` engine.

``spec``: read and check a sweep YAML; ``command``: the argv ``wandb agent`` builds for a trial;
``engine``: proposals and early termination; ``store``: the sweep folder (trials, summary);
``run_folder``: a trial's metrics read back; ``runner``: the offline loop; ``online``: ``wandb agent``.
"""

import warnings

# sweeps 0.2 declares its pydantic model the pydantic-1 way; pydantic 2 warns about it on import (harmless:
# the engine module passes the fields by their aliases, which both versions accept)
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", category=UserWarning, module="pydantic")
    warnings.filterwarnings("ignore", message=".*class-based `config`.*")
    import sweeps  # noqa: F401
