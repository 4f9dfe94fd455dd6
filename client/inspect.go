package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/dflockd/dflockd/protocol"
)

// checkName validates a connection name locally ("" = no name).
func checkName(name string) error {
	if name != "" && !protocol.ValidName([]byte(name)) {
		return invalid("connection name %q: want 1 to %d bytes of printable ASCII, no leading or trailing space", name, protocol.MaxName)
	}
	return nil
}

// sendName sends the name extension. A plain `error` answer (a server
// that does not know the extension) is ignored; any other failure is
// returned.
func (c *Conn) sendName(ctx context.Context, name string) error {
	_, err := c.roundTrip(ctx, protocol.CmdName, "_", name, wantBare)
	if err != nil && errors.Is(err, ErrServer) && !c.closed.Load() {
		return nil // 1.x: unknown command; the connection stays usable
	}
	return err
}

// KeyInfo is the answer to Inspect: who holds one lock or semaphore key
// and who waits for it (the dflockd inspect extension). Lists are empty,
// not nil. A server lists at most --stats-max-items entries of each list;
// Totals then counts all of them and Truncated is true.
type KeyInfo struct {
	Key string `json:"key"`
	// Kind is "lock" or "semaphore".
	Kind string `json:"kind"`
	// Exists is false when the key does not exist (never used, or
	// collected as idle); the other members are then zero.
	Exists bool `json:"exists"`
	// Limit is the number of slots (1 for a lock).
	Limit int `json:"limit"`
	// Holders lists the live leases, in no particular order.
	Holders []KeyHolder `json:"holders"`
	// Waiters lists the queue in FIFO order: the first is served next.
	Waiters   []KeyWaiter `json:"waiters"`
	Totals    KeyTotals   `json:"totals"`
	Truncated bool        `json:"truncated"`
}

// KeyTotals counts holders and waiters, listed or not.
type KeyTotals struct {
	Holders int `json:"holders"`
	Waiters int `json:"waiters"`
}

// KeyConn describes the connection of a holder or waiter.
type KeyConn struct {
	// ConnID is the server's id of the connection (as in Stats.Clients).
	ConnID uint64 `json:"conn_id"`
	// Remote is the connection's remote address (uid/pid on Unix
	// sockets).
	Remote string `json:"remote"`
	// Identity is the authenticated identity, "" without auth.
	Identity string `json:"identity"`
	// Name is the name the connection gave itself (Options.Name), "" if
	// none.
	Name string `json:"name"`
	// Session is the id of the named session the slot or place belongs
	// to ("" = unnamed); Detached says that its connection is gone and
	// it waits, for its TTL, to be resumed (the dflockd sessions
	// extension).
	Session  string `json:"session,omitempty"`
	Detached bool   `json:"detached,omitempty"`
}

// KeyHolder is one granted slot. It carries the fencing number of the
// slot's token (see FenceFromToken), never the token itself.
type KeyHolder struct {
	Fence uint64 `json:"fence"`
	KeyConn
	// LeaseLeftS is the lease left, in seconds.
	LeaseLeftS float64 `json:"lease_left_s"`
	// HeldForS is the time since the grant, in seconds.
	HeldForS float64 `json:"held_for_s"`
	// Enqueued marks a slot granted to an enqueue (e/se) whose owner has
	// not claimed it with wait yet.
	Enqueued bool `json:"enqueued"`
}

// KeyWaiter is one queued place.
type KeyWaiter struct {
	KeyConn
	// WaitingS is the time since it joined the queue, in seconds.
	WaitingS float64 `json:"waiting_s"`
	// Enqueued marks a two-phase place (enqueue, then wait); otherwise
	// the connection is blocked in an acquire.
	Enqueued bool `json:"enqueued"`
}

// InspectRaw returns the server's answer to inspect for key as raw JSON:
// the lock namespace, or the semaphore one when semaphore is set. A
// server that does not support inspect (1.x) gives an error wrapping
// ErrUnsupported.
func (c *Conn) InspectRaw(ctx context.Context, key string, semaphore bool) (json.RawMessage, error) {
	if err := checkKey("key", key); err != nil {
		return nil, err
	}
	arg := ""
	if semaphore {
		arg = "sem"
	}
	resp, err := c.roundTrip(ctx, protocol.CmdInspect, key, arg, wantOK)
	if err != nil {
		if resp.Status == protocol.StatusError && !c.closed.Load() {
			// Key and arg are valid: only a server without the
			// extension answers a plain error.
			return nil, fmt.Errorf("client: inspect %s: %w", key, ErrUnsupported)
		}
		return nil, err
	}
	if resp.Body == nil || !json.Valid(resp.Body) {
		return nil, fmt.Errorf("%w: inspect answer is not JSON", ErrServer)
	}
	return json.RawMessage(resp.Body), nil
}

// Inspect returns who holds key and who waits for it, decoded; see
// InspectRaw.
func (c *Conn) Inspect(ctx context.Context, key string, semaphore bool) (*KeyInfo, error) {
	raw, err := c.InspectRaw(ctx, key, semaphore)
	if err != nil {
		return nil, err
	}
	var ki KeyInfo
	if err := json.Unmarshal(raw, &ki); err != nil {
		return nil, fmt.Errorf("%w: inspect: %w", ErrServer, err)
	}
	if ki.Holders == nil {
		ki.Holders = []KeyHolder{}
	}
	if ki.Waiters == nil {
		ki.Waiters = []KeyWaiter{}
	}
	return &ki, nil
}
