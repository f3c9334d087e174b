"""Learning and optimisation: perceptual losses (`losses`: VGG taps, Gram, TV), a projected L-BFGS (`lbfgs`),
the optimisation of Gatys et al. (`gatys`, also used by the engine's refinement), style and SR training
(`style`, `sr`, `common`) and evaluation (`evaluate`: PSNR/SSIM/LPIPS on SR sets, `artifacts` for styles).

May import: `impasto.errors`, `impasto.cancel`, `impasto.device`, `impasto.nets`, `impasto.models`.
Never the engine, `serve`, `batch` or `cli`: training runs without the inference stack."""
