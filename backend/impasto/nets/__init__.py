"""Network families: one file each. Style nets are described as a plan of steps (see `blocks`) so the
tiler can run them layer by layer with whole-image instance-norm statistics."""
