//go:build race

package face

// raceEnabled trims the slowest detector runs under the race detector, whose
// instrumentation makes mtcnn's and SSD's networks several times slower.
const raceEnabled = true
