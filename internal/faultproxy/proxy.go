// Package faultproxy is a small loopback TCP proxy for fault-injection
// tests. It forwards bytes both ways between each accepted client and a
// fresh connection to the target, and can cut one connection or all of
// them on demand: both sockets of a pair are closed at once, so the
// client and the server each see their peer vanish mid-stream. It can
// also refuse new connections for a while (Refuse), standing in for a
// server that cannot be reached.
package faultproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"sync"
	"time"
)

// DialTimeout bounds the dial to the target for each accepted client.
const DialTimeout = 5 * time.Second

// ErrClosed is returned by operations on a closed Proxy.
var ErrClosed = errors.New("faultproxy: proxy closed")

// ConnInfo describes one proxied connection.
type ConnInfo struct {
	// ID identifies the pair for Cut.
	ID uint64
	// Client is the client's address as seen by the proxy (the client's
	// local address).
	Client string
	// Upstream is the proxy's local address on the connection to the
	// target (the remote address the target sees).
	Upstream string
}

// Proxy forwards connections from its listener to a target address.
type Proxy struct {
	target string
	ln     net.Listener

	mu      sync.Mutex
	pairs   map[uint64]*pair
	nextID  uint64
	closed  bool
	cuts    int
	refuse  bool
	refused int

	wg sync.WaitGroup
}

type pair struct {
	info       ConnInfo
	down, up   net.Conn
	closeOnce  sync.Once
	wasCut     bool
	pumpsAlive int
}

func (p *pair) close() {
	p.closeOnce.Do(func() {
		p.down.Close()
		p.up.Close()
	})
}

// Listen starts a proxy on a free loopback port that forwards to target
// ("host:port"). Close it when done.
func Listen(ctx context.Context, target string) (*Proxy, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen: %w", err)
	}
	p := &Proxy{target: target, ln: ln, pairs: make(map[uint64]*pair)}
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// Addr returns the proxy's listening address ("127.0.0.1:port").
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		down, err := p.ln.Accept()
		if err != nil {
			return // listener closed
		}
		p.mu.Lock()
		refuse := p.refuse
		if refuse {
			p.refused++
		}
		p.mu.Unlock()
		if refuse {
			down.Close()
			continue
		}
		up, err := net.DialTimeout("tcp", p.target, DialTimeout)
		if err != nil {
			down.Close()
			continue
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			down.Close()
			up.Close()
			return
		}
		p.nextID++
		pr := &pair{
			info: ConnInfo{ID: p.nextID, Client: down.RemoteAddr().String(), Upstream: up.LocalAddr().String()},
			down: down, up: up, pumpsAlive: 2,
		}
		p.pairs[pr.info.ID] = pr
		p.wg.Add(2)
		p.mu.Unlock()
		go p.pump(pr, pr.up, pr.down)
		go p.pump(pr, pr.down, pr.up)
	}
}

// pump copies src to dst until either side fails, then closes the pair:
// the protocol has no half-close, so one dead direction ends both.
func (p *Proxy) pump(pr *pair, dst, src net.Conn) {
	defer p.wg.Done()
	_, _ = io.Copy(dst, src)
	pr.close()
	p.mu.Lock()
	pr.pumpsAlive--
	if pr.pumpsAlive == 0 {
		delete(p.pairs, pr.info.ID)
	}
	p.mu.Unlock()
}

// Conns lists the live pairs, ordered by ID.
func (p *Proxy) Conns() []ConnInfo {
	p.mu.Lock()
	out := make([]ConnInfo, 0, len(p.pairs))
	for _, pr := range p.pairs {
		if !pr.wasCut {
			out = append(out, pr.info)
		}
	}
	p.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Find returns the live pair whose client address is clientAddr (the
// client's net.Conn LocalAddr().String()).
func (p *Proxy) Find(clientAddr string) (ConnInfo, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pr := range p.pairs {
		if !pr.wasCut && pr.info.Client == clientAddr {
			return pr.info, true
		}
	}
	return ConnInfo{}, false
}

// Cut closes both sockets of pair id. It reports whether the pair was
// live.
func (p *Proxy) Cut(id uint64) bool {
	p.mu.Lock()
	pr, ok := p.pairs[id]
	if ok && pr.wasCut {
		ok = false
	}
	if ok {
		pr.wasCut = true
		p.cuts++
	}
	p.mu.Unlock()
	if ok {
		pr.close()
	}
	return ok
}

// CutAll closes every live pair and returns how many it cut. New
// connections are still accepted afterwards.
func (p *Proxy) CutAll() int {
	p.mu.Lock()
	var victims []*pair
	for _, pr := range p.pairs {
		if !pr.wasCut {
			pr.wasCut = true
			victims = append(victims, pr)
		}
	}
	p.cuts += len(victims)
	p.mu.Unlock()
	for _, pr := range victims {
		pr.close()
	}
	return len(victims)
}

// Refuse switches refusing new connections on or off. While it is on,
// each new client is accepted and closed at once, without a connection to
// the target: the client sees the end of the stream before any answer, as
// from a server that is down or unreachable. Live pairs are not affected;
// combine with CutAll for a full outage.
func (p *Proxy) Refuse(on bool) {
	p.mu.Lock()
	p.refuse = on
	p.mu.Unlock()
}

// Refused returns how many clients were refused so far.
func (p *Proxy) Refused() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.refused
}

// Cuts returns how many pairs Cut and CutAll have cut so far.
func (p *Proxy) Cuts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cuts
}

// Close stops accepting, cuts every pair and waits for the proxy's
// goroutines to end.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ErrClosed
	}
	p.closed = true
	victims := make([]*pair, 0, len(p.pairs))
	for _, pr := range p.pairs {
		victims = append(victims, pr)
	}
	p.mu.Unlock()
	err := p.ln.Close()
	for _, pr := range victims {
		pr.close()
	}
	p.wg.Wait()
	if err != nil {
		return fmt.Errorf("faultproxy: close listener: %w", err)
	}
	return nil
}
