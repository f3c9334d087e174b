"""Network families, one file each (johnson, engstrom, sr, srgan; vgg for the loss networks), and the contract
they share: each family's module is a `spec.Network` that describes itself with a `NetSpec` (kind, scale,
size multiple, halo, channels, plan of typed steps from `blocks`), and registers an `Arch` with `registry`
(detect, read hyperparameters from shapes, build, load), checked against the bounds in `limits`.
Imports only the foundation (errors)."""
