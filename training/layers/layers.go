// Package layers holds the building blocks that training/sd (the UNet),
// training/textenc (the CLIP text encoder) and training/vae (the
// AutoencoderKL) share: strict weight checking and loading, the GoMLX
// layers their forward passes are built from, and the ONNX emitters their
// exports use. One copy keeps the three networks computing (and exporting)
// the same operation the same way, so a fix to one reaches all of them.
//
// It sits above training/model (whose Weights, ParamSpec, Lookup and Dot3 it
// uses) and below the networks; training/model must not import it.
package layers
