"""Learning and optimisation: perceptual losses (`losses`: VGG taps, Gram, TV), the optimisation of Gatys et
al. (`gatys`, also used by the engine's refinement), style and SR training (`style`, `sr`, `common`) and
evaluation (`evaluate`: PSNR/SSIM on SR sets).

May import: `impasto.errors`, `impasto.cancel`, `impasto.device`, `impasto.nets`, `impasto.models`.
Never the engine, `serve`, `batch` or `cli`: training runs without the inference stack."""
