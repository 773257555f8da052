// Package faceapi is a pure-Go, float32 port of three networks of the
// JavaScript library face-api (@vladmandic/face-api 1.7.15), run on its
// published TF.js weights:
//
//   - Recognizer: FaceRecognitionNet, the 128-d face descriptor.
//   - TinyFaceDetector: the small, fast face detector.
//   - SSDMobileNetV1: face-api's default, more accurate face detector.
//
// Preprocessing follows face-api's handling of image tensors (pad to a
// square, bilinear resize, mean subtraction), so results match the
// reference to float32 rounding; see README.md for the measured agreement.
//
// Typical use:
//
//	det, err := faceapi.LoadSSDMobileNetV1(modelDir)
//	rec, err := faceapi.LoadRecognizer(modelDir)
//	faces, err := det.Detect(img, faceapi.SSDOptions{})
//	crop := img.(interface{ SubImage(image.Rectangle) image.Image }).
//		SubImage(faces[0].Box.Rect(img.Bounds()))
//	desc, err := rec.Describe(crop)
//
// Models and Describe/Detect calls are safe for concurrent use. Each call
// spreads its convolutions over GOMAXPROCS goroutines.
package faceapi
