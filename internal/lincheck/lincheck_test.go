package lincheck

import (
	"flag"
	"os"
	"strconv"
	"testing"
	"time"

	"go.uber.org/goleak"
)

var (
	long = flag.Bool("lincheck.long", false, "run the long linearizability check (also LINCHECK_LONG=1)")
	seed = flag.Int64("lincheck.seed", 0, "seed of the random runs (0 = from the clock)")
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func longMode() bool {
	if *long {
		return true
	}
	v, _ := strconv.ParseBool(os.Getenv("LINCHECK_LONG"))
	return v
}

func runSeed() int64 {
	if *seed != 0 {
		return *seed
	}
	return time.Now().UnixNano()
}

// TestLinearizable runs many clients against a real server, without
// faults and then with them, and requires porcupine to accept the
// history. The CI run is short; -lincheck.long makes it long.
func TestLinearizable(t *testing.T) {
	cases := []struct {
		name   string
		faults bool
	}{{"clean", false}, {"faults", true}}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := runConfig{seed: runSeed() + int64(i), clients: 10, duration: 1500 * time.Millisecond, faults: tc.faults}
			check := 30 * time.Second
			if d := os.Getenv("LINCHECK_DEBUG_MS"); d != "" {
				ms, _ := strconv.Atoi(d)
				cfg.duration, cfg.clients = time.Duration(ms)*time.Millisecond, 6
			}
			if longMode() {
				cfg.clients, cfg.duration, check = 16, 20*time.Second, 5*time.Minute
			}
			run(t, cfg, check)
		})
	}
}
