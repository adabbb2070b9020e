"""GenARM's offline half: training an autoregressive reward model (`rshape arm-train`).
Decoding with it is `method="genarm"` (decoding/choosers.py, `GenArmChooser`)."""
