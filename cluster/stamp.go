package cluster

import (
	"crypto/rand"
	"time"
)

// The package's only clock and random source. Apply, snapshots and
// restores never read them: only Stamp, which a leader calls when it
// builds a command. Tests replace both with functions that panic.
var (
	timeNow  = time.Now
	randRead = rand.Read
)

// Stamp returns what a leader puts in a command it proposes: its clock
// (unix nanos) and a fresh random seed for token salts.
func Stamp() (at int64, seed Seed) {
	if _, err := randRead(seed[:]); err != nil {
		// crypto/rand.Read does not fail on supported platforms.
		panic("cluster: crypto/rand: " + err.Error())
	}
	return timeNow().UnixNano(), seed
}
