// Package cliflag holds the flag value types the dflockd command lines
// share.
package cliflag

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/dflockd/dflockd/protocol"
)

// Seconds is a flag counted in whole seconds, the unit the protocol
// carries timeouts and leases in. It accepts a bare number of seconds
// ("30") or a Go duration ("30s", "5m", "1h30m"), from 0 to
// protocol.MaxSeconds. A fraction of a second ("500ms", "1.5s", "1.5")
// is refused with an error saying the value must be whole seconds, rather
// than silently rounded.
type Seconds int64

// UnmarshalText implements encoding.TextUnmarshaler (kong uses it).
func (s *Seconds) UnmarshalText(b []byte) error {
	text := strings.TrimSpace(string(b))
	n, err := strconv.ParseInt(text, 10, 64)
	if errors.Is(err, strconv.ErrRange) {
		return fmt.Errorf("%s seconds is more than the %d the server accepts", text, protocol.MaxSeconds)
	}
	if err == nil {
		if n < 0 {
			return fmt.Errorf("negative duration %s", text)
		}
		if n > protocol.MaxSeconds {
			return fmt.Errorf("%d seconds is more than the %d the server accepts", n, protocol.MaxSeconds)
		}
		*s = Seconds(n)
		return nil
	}
	if _, err := strconv.ParseFloat(text, 64); err == nil {
		return wholeErr(text)
	}
	d, err := time.ParseDuration(text)
	if err != nil {
		return fmt.Errorf("want whole seconds such as 30, 30s or 5m: %w", err)
	}
	if d < 0 {
		return fmt.Errorf("negative duration %s", text)
	}
	if d%time.Second != 0 {
		return wholeErr(text)
	}
	*s = Seconds(d / time.Second)
	return nil
}

// wholeErr is the error for a value with a fraction of a second.
func wholeErr(text string) error {
	return fmt.Errorf("%s: must be whole seconds (the server counts whole seconds; e.g. 1s, 30s, 5m)", text)
}

// Duration returns s as a time.Duration.
func (s Seconds) Duration() time.Duration { return time.Duration(s) * time.Second }

// String returns s as a Go duration ("30s", "5m0s").
func (s Seconds) String() string { return s.Duration().String() }
