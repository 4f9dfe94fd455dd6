package cluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// testCA is a throw-away certificate authority for raft links.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "dflockd test raft CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// node issues a certificate for a node, usable by both ends of a link.
func (ca *testCA) node(t testing.TB, name string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func (ca *testCA) config(t testing.TB, name string) *tls.Config {
	t.Helper()
	cfg, err := MutualTLS(ca.node(t, name), ca.pem)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func listenStream(t testing.TB, cfg *tls.Config) *Stream {
	t.Helper()
	s, err := Listen("127.0.0.1:0", StreamConfig{TLS: cfg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// accepted runs s's Accept loop until the stream closes and delivers
// what it accepts; connections left unread are closed at the end.
func accepted(t testing.TB, s *Stream) <-chan net.Conn { return acceptLoop(t, s, s.Accept) }

// acceptLoop calls accept until it fails (the stream closed), delivering
// what it returns; the stream is closed when the test ends, and what was
// never read is closed then.
func acceptLoop[C io.Closer](t testing.TB, s *Stream, accept func() (C, error)) <-chan C {
	ch := make(chan C, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := accept()
			if err != nil {
				return
			}
			ch <- c
		}
	}()
	t.Cleanup(func() {
		s.Close()
		<-done
		for len(ch) > 0 {
			(<-ch).Close()
		}
	})
	return ch
}

// next returns the next accepted connection, or nil after d.
func next(ch <-chan net.Conn, d time.Duration) net.Conn {
	select {
	case c := <-ch:
		return c
	case <-time.After(d):
		return nil
	}
}

// exchange checks that bytes cross a dialled connection and the
// connection ch accepts for it, both ways: the dialler speaks first, as
// raft does (the acceptor reads one byte to tell raft from relays).
func exchange(t testing.TB, a net.Conn, ch <-chan net.Conn) {
	t.Helper()
	_ = a.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := a.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	b := next(ch, 5*time.Second)
	if b == nil {
		t.Fatal("nothing accepted")
	}
	defer b.Close()
	_ = b.SetDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(b, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("read %q, %v", buf, err)
	}
	go func() { _, _ = b.Write([]byte("pong")) }()
	if _, err := io.ReadFull(a, buf); err != nil || string(buf) != "pong" {
		t.Fatalf("read %q, %v", buf, err)
	}
}

func TestStreamMutualTLS(t *testing.T) {
	ca := newTestCA(t)
	a, b := listenStream(t, ca.config(t, "n1")), listenStream(t, ca.config(t, "n2"))
	inB := accepted(t, b)
	c, err := a.Dial(raft.ServerAddress(b.Addr().String()), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	exchange(t, c, inB)
}

// A process without a certificate from the cluster's CA cannot open a raft
// connection to a node, nor can a node be made to talk to it; a silent
// TCP connection holds up nobody.
func TestStreamRefusesStrangers(t *testing.T) {
	ca, other := newTestCA(t), newTestCA(t)
	node := listenStream(t, ca.config(t, "n1"))
	inNode := accepted(t, node)
	addr := raft.ServerAddress(node.Addr().String())

	// No certificate at all.
	nocert := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13} //nolint:gosec // the test plays an attacker
	if c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", string(addr), nocert); err == nil {
		// TLS 1.3: the client may finish before the server refuses;
		// the refusal shows on the first read.
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatal("a client without a certificate got data")
		}
		c.Close()
	}
	// A certificate from another CA, either direction.
	rogue := listenStream(t, other.config(t, "rogue"))
	if c, err := rogue.Dial(addr, 5*time.Second); err == nil {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatal("a rogue node's connection was served")
		}
		c.Close()
	}
	if c, err := node.Dial(raft.ServerAddress(rogue.Addr().String()), 5*time.Second); err == nil {
		c.Close()
		t.Fatal("a node dialled a peer whose certificate is from another CA")
	}
	// A silent plain TCP connection.
	silent, err := net.DialTimeout("tcp", string(addr), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	if c := next(inNode, 200*time.Millisecond); c != nil {
		c.Close()
		t.Fatal("the node accepted a stranger's connection")
	}
	// A member still gets through at once.
	peer := listenStream(t, ca.config(t, "n2"))
	c, err := peer.Dial(addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	exchange(t, c, inNode)
}

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:7001": true, "127.1.2.3:1": true, "[::1]:7001": true, "localhost:7001": true,
		"10.0.0.1:7001": false, "[2001:db8::1]:7001": false, "0.0.0.0:7001": false, "example.com:7001": false,
		"127.0.0.1": false,
	} {
		if got := IsLoopback(addr); got != want {
			t.Errorf("IsLoopback(%q) = %v; want %v", addr, got, want)
		}
	}
}

// counterFSM sums the distinct values applied to it (applying a value
// twice counts it once, so a test may retry an apply whose outcome a
// leadership change made unknown); it batches and snapshots.
type counterFSM struct {
	mu   sync.Mutex
	seen map[uint64]bool
	n    atomic.Uint64 // entries applied
	sum  atomic.Uint64 // of distinct values
}

func (f *counterFSM) Apply(l *raft.Log) any {
	f.n.Add(1)
	v := binary.BigEndian.Uint64(l.Data)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.seen == nil {
		f.seen = make(map[uint64]bool)
	}
	if !f.seen[v] {
		f.seen[v] = true
		f.sum.Add(v)
	}
	return f.sum.Load()
}

// ApplyBatch applies commands; raft also passes configuration entries to
// a batching state machine, which carry no value.
func (f *counterFSM) ApplyBatch(ls []*raft.Log) []any {
	out := make([]any, len(ls))
	for i, l := range ls {
		if l.Type == raft.LogCommand {
			out[i] = f.Apply(l)
		}
	}
	return out
}

func (f *counterFSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var b []byte
	for v := range f.seen {
		b = binary.BigEndian.AppendUint64(b, v)
	}
	return counterSnap(b), nil
}

func (f *counterFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil || len(b)%8 != 0 {
		return fmt.Errorf("bad snapshot: %v", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seen = make(map[uint64]bool)
	var sum uint64
	for ; len(b) > 0; b = b[8:] {
		v := binary.BigEndian.Uint64(b)
		f.seen[v] = true
		sum += v
	}
	f.sum.Store(sum)
	return nil
}

type counterSnap []byte

func (s counterSnap) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (counterSnap) Release() {}

// A three-node raft cluster whose every link is mutual TLS elects a
// leader and replicates entries to every node.
func TestRaftOverMutualTLS(t *testing.T) {
	ca := newTestCA(t)
	const n = 3
	var (
		streams [n]*Stream
		fsms    [n]*counterFSM
		nodes   [n]*raft.Raft
		trs     [n]*raft.NetworkTransport
		servers []raft.Server
	)
	for i := range n {
		streams[i] = listenStream(t, ca.config(t, fmt.Sprintf("n%d", i+1)))
		fsms[i] = &counterFSM{}
		servers = append(servers, raft.Server{ID: raft.ServerID(fmt.Sprintf("n%d", i+1)),
			Address: raft.ServerAddress(streams[i].Addr().String())})
	}
	for i := range n {
		cfg := raft.DefaultConfig()
		cfg.LocalID = servers[i].ID
		cfg.HeartbeatTimeout = 200 * time.Millisecond
		cfg.ElectionTimeout = 200 * time.Millisecond
		cfg.LeaderLeaseTimeout = 100 * time.Millisecond
		cfg.CommitTimeout = 5 * time.Millisecond
		cfg.Logger = hclog.NewNullLogger()
		tr := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
			Stream: streams[i], MaxPool: 3, Timeout: 5 * time.Second, Logger: hclog.NewNullLogger(),
		})
		trs[i] = tr
		store := raft.NewInmemStore()
		snaps := raft.NewInmemSnapshotStore()
		if err := raft.BootstrapCluster(cfg, store, store, snaps, tr, raft.Configuration{Servers: servers}); err != nil {
			t.Fatal(err)
		}
		r, err := raft.NewRaft(cfg, fsms[i], store, store, snaps, tr)
		if err != nil {
			t.Fatal(err)
		}
		nodes[i] = r
	}
	defer func() {
		for i, r := range nodes {
			if r != nil {
				_ = r.Shutdown().Error()
			}
			if trs[i] != nil {
				trs[i].CloseStreams()
				_ = trs[i].Close()
			}
		}
	}()
	leader := waitLeader(t, nodes[:])
	for v := uint64(1); v <= 10; v++ {
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], v)
		if err := leader.Apply(b[:], 5*time.Second).Error(); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for i := range n {
		for fsms[i].sum.Load() != 55 {
			if time.Now().After(deadline) {
				t.Fatalf("node %d applied %d entries, sum %d; want sum 55", i+1, fsms[i].n.Load(), fsms[i].sum.Load())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// waitLeader waits for one of rs to be leader and returns it.
func waitLeader(t testing.TB, rs []*raft.Raft) *raft.Raft {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		for _, r := range rs {
			if r.State() == raft.Leader {
				return r
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no leader elected")
	return nil
}

// relayed runs s's AcceptRelay loop until the stream closes.
func relayed(t testing.TB, s *Stream) <-chan *RelayConn { return acceptLoop(t, s, s.AcceptRelay) }

// One port carries raft connections and relayed client connections; a
// relay's header arrives intact and the client's bytes follow it, both
// ways, over mutual TLS and over plain TCP.
func TestStreamRelay(t *testing.T) {
	ca := newTestCA(t)
	for _, mode := range []string{"tls", "tcp"} {
		t.Run(mode, func(t *testing.T) {
			var ca1, ca2 *tls.Config
			if mode == "tls" {
				ca1, ca2 = ca.config(t, "n1"), ca.config(t, "n2")
			}
			leader, follower := listenStream(t, ca1), listenStream(t, ca2)
			raftIn, relayIn := accepted(t, leader), relayed(t, leader)
			info := RelayInfo{Remote: "192.0.2.7:51514", Transport: "tls", Identity: "cert:alice", Node: "n2"}
			rc, err := follower.DialRelay(raft.ServerAddress(leader.Addr().String()), info, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			if _, err := rc.Write([]byte("l\nk\n0\n")); err != nil {
				t.Fatal(err)
			}
			var got *RelayConn
			select {
			case got = <-relayIn:
			case <-time.After(5 * time.Second):
				t.Fatal("no relay accepted")
			}
			defer got.Close()
			want := info
			if mode == "tcp" {
				want.Identity = "" // only mutual TLS vouches for it
			}
			if got.Info != want {
				t.Fatalf("relay info %+v; want %+v", got.Info, want)
			}
			_ = got.SetDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 6)
			if _, err := io.ReadFull(got, buf); err != nil || string(buf) != "l\nk\n0\n" {
				t.Fatalf("relayed bytes %q, %v", buf, err)
			}
			if _, err := got.Write([]byte("ok\n")); err != nil {
				t.Fatal(err)
			}
			_ = rc.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.ReadFull(rc, buf[:3]); err != nil || string(buf[:3]) != "ok\n" {
				t.Fatalf("answer %q, %v", buf[:3], err)
			}
			// Raft connections still reach Accept.
			c, err := follower.Dial(raft.ServerAddress(leader.Addr().String()), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			exchange(t, c, raftIn)
		})
	}
}

func TestReadRelayHeaderRejectsGarbage(t *testing.T) {
	for name, hdr := range map[string][]byte{
		"version":   {9},
		"truncated": {relayVersion, 5, 'a'},
		"oversize":  append([]byte{relayVersion}, binary.AppendUvarint(nil, maxRelayField+1)...),
		"empty":     {},
	} {
		a, b := net.Pipe()
		go func() { _, _ = a.Write(hdr); a.Close() }()
		if _, err := readRelayHeader(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
		b.Close()
	}
}
