//go:build race

package chaos

// raceEnabled reports whether the race detector is on: the leak test then
// churns fewer connections to stay within its time budget.
const raceEnabled = true
