package bench

import (
	"errors"
	"fmt"
	"time"

	"github.com/dflockd/dflockd/protocol"
	"github.com/dflockd/dflockd/transport"
)

// Mode is what one benchmark operation does.
type Mode string

// The modes.
const (
	// ModeLock: l (acquire with timeout and lease) then r. The default.
	ModeLock Mode = "lock"
	// ModeSemaphore: sl (acquire a slot of a semaphore of Limit) then sr.
	ModeSemaphore Mode = "semaphore"
	// ModeTwoPhase: e (enqueue), w (wait), r.
	ModeTwoPhase Mode = "twophase"
	// ModeHandoff: every worker acquires and releases the one key --key;
	// each operation is one ordered hand-off, checked by fencing numbers.
	ModeHandoff Mode = "handoff"
	// ModeSignal: workers publish on a channel that Listeners connections
	// listen on; the rate is delivered frames per second and the latency
	// is from publish to delivery.
	ModeSignal Mode = "signal"
)

// Modes lists every mode, in the order the help text shows them.
var Modes = []Mode{ModeLock, ModeSemaphore, ModeTwoPhase, ModeHandoff, ModeSignal}

// Config describes one benchmark run. The zero value of a field means the
// default given in its comment, as for the command-line tool.
type Config struct {
	Mode    Mode // default ModeLock
	Workers int  // concurrent workers (> 0)
	Rounds  int  // measured operations per worker (> 0)
	Warmup  int  // unmeasured operations per worker before the timed part (≥ 0)
	// Key is the key, used as a prefix ("<key>_<worker>") unless SharedKey
	// is set or the mode is ModeHandoff. For ModeSignal it is the channel.
	Key       string
	SharedKey bool
	// Timeout is the acquire timeout sent with each l/sl/w (whole seconds).
	Timeout time.Duration
	// Lease is the lease sent with each acquire (whole seconds; 0 = let
	// the server use its default).
	Lease time.Duration
	// Limit is the semaphore size for ModeSemaphore (default: Workers).
	Limit int
	// Connections is the number of persistent connections per worker
	// (0 = 1); a worker's operations rotate over them.
	Connections int
	// Pipeline is the number of operations kept in flight per worker
	// (0 = 1): each waits only for its own answers, not for the others.
	// Needs per-worker keys (not SharedKey, not ModeHandoff).
	Pipeline int
	// Listeners is the number of listening connections for ModeSignal
	// (0 = 1).
	Listeners int
	// SignalWindow is how many publishes the publishers of ModeSignal may
	// run ahead of the slowest listener (0 = as many frames as fill half
	// of the server's default push queue, DefaultSignalQueueBytes / 2).
	SignalWindow int
	// PayloadSize is the payload of each ModeSignal publish in bytes: the
	// publish time (timestampDigits decimal digits, needed for the
	// latency) padded to this size (0 = the publish time alone).
	PayloadSize int
	// Servers are the endpoints; worker i uses Servers[i mod len].
	Servers []transport.Endpoint
	// Transport carries TLS settings for tls and quic endpoints.
	Transport transport.Options
	// AuthToken, when set, is sent as the first request of every
	// connection.
	AuthToken string
	// Progress, when set, is called about five times a second while the
	// timed part runs, with the operations completed so far and the total.
	Progress func(done, total int64)
}

// withDefaults returns c with zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.Mode == "" {
		c.Mode = ModeLock
	}
	if c.Key == "" {
		c.Key = "bench"
	}
	if c.Connections == 0 {
		c.Connections = 1
	}
	if c.Pipeline == 0 {
		c.Pipeline = 1
	}
	if c.Listeners == 0 {
		c.Listeners = 1
	}
	if c.Limit == 0 {
		c.Limit = max(c.Workers, 1)
	}
	if c.Mode == ModeHandoff {
		c.SharedKey = true
	}
	return c
}

// Validate reports the first invalid field, in the words the command
// line uses.
func (c Config) Validate() error {
	c = c.withDefaults()
	switch {
	case !validMode(c.Mode):
		return fmt.Errorf("unknown mode %q", c.Mode)
	case c.Workers <= 0:
		return errors.New("--workers must be > 0")
	case c.Rounds <= 0:
		return errors.New("--rounds must be > 0")
	case c.Warmup < 0:
		return errors.New("--warmup must be >= 0")
	case c.Timeout < 0:
		return errors.New("--timeout must be >= 0")
	case c.Lease < 0:
		return errors.New("--lease must be >= 0")
	case c.Connections < 0:
		return errors.New("--connections must be >= 0")
	case c.Pipeline < 0:
		return errors.New("--pipeline must be >= 0")
	case c.Listeners < 0:
		return errors.New("--listeners must be >= 0")
	case c.SignalWindow < 0:
		return errors.New("--signal-window must be >= 0")
	case c.PayloadSize != 0 && c.PayloadSize < timestampDigits:
		return fmt.Errorf("--payload-size must be 0 or at least %d (the payload carries the publish time)", timestampDigits)
	case c.PayloadSize > protocol.MaxPayload(len(c.Key)):
		return fmt.Errorf("--payload-size must be at most %d on channel %q (the pushed frame must fit in %d bytes)",
			protocol.MaxPayload(len(c.Key)), c.Key, protocol.MaxLongLine)
	case c.Limit < 0:
		return errors.New("--limit must be >= 0")
	case len(c.Servers) == 0:
		return errors.New("--servers needs at least one endpoint")
	case c.Pipeline > 1 && c.SharedKey:
		return errors.New("--pipeline > 1 needs per-worker keys: requests queued behind a blocked acquire of the same key on one connection would wait for themselves")
	}
	for _, ep := range c.Servers {
		if ep.Addr == "" {
			return errors.New("empty --servers entry")
		}
	}
	return nil
}

func validMode(m Mode) bool {
	for _, x := range Modes {
		if m == x {
			return true
		}
	}
	return false
}

// wholeSeconds renders d rounded up to whole seconds.
func wholeSeconds(d time.Duration) string {
	s := int64(d / time.Second)
	if d%time.Second > 0 {
		s++
	}
	return seconds(s)
}
