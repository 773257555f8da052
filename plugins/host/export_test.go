package host

// The stderr bounds, for the tests that check them.
const (
	LineRate  = lineRate
	LineBurst = lineBurst
)
