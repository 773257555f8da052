//go:build !race

package mtcnn

const raceEnabled = false
