//go:build race

package policy

// raceEnabled skips allocation assertions: the race detector allocates.
const raceEnabled = true
