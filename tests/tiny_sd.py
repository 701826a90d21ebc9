"""Tiny Stable Diffusion pipelines built in code for tests (thin wrapper over the package module).

``python -m tests.tiny_sd OUTDIR`` writes ``OUTDIR/sd`` (StableDiffusionPipeline) and
``OUTDIR/controlnet`` (ControlNetModel with re-initialised zero convs), random weights, no download.
The builders live in :mod:`dmsfactory.generators.diffusion.tiny` so demos can use them too.
"""

from dmsfactory.generators.diffusion.tiny import (  # noqa: F401
    build_components,
    build_controlnet,
    build_tokenizer,
    main,
    save_tiny,
)

if __name__ == "__main__":
    raise SystemExit(main())
