"""The engine: editor pixels in, editor pixels out, on the fastest path the device has.

Owns pixel formats (`pixels`), image files (`imageio`, `tiff16`), exact tiling with whole-image
instance-norm statistics (`tiling`) and the `Engine` (`engine`): the transport-agnostic operations
stylize, upscale, refine and gatys that the CLI, the server and batch jobs all call.

May import: `impasto.errors`, `impasto.cancel`, `impasto.device`, `impasto.nets`, `impasto.models`,
`impasto.train.gatys` (refinement). Never `serve`, `batch` or `cli`. Kept empty so that importing a light
module here (imageio) does not load torch."""
