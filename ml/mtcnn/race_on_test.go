//go:build race

package mtcnn

// raceEnabled trims the slowest golden runs under the race detector, which
// makes the pure-Go convolutions 5-10x slower; the numbers it would check do
// not depend on the race build, and the concurrency tests still run in full.
const raceEnabled = true
