package cluster

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"time"

	"github.com/hashicorp/raft"
)

// Publishing every member's client endpoints. The replicated member list
// (SetMember, State.Members) is what the `cluster` request answers with,
// and all a client given one address has to find the others. Only the
// leader can propose, so a follower sends its endpoints to the leader in
// a message of its own on the raft stream layer: announceMagic, then the
// node id and the endpoints. The leader proposes SetMember for that node
// if it is in the raft configuration, and answers whether it did.
//
// The message is its own stream message type, handled inside this
// package, rather than a request on a relayed client connection: the
// server stays out of it, no client protocol request exists that a client
// could try, and the announcement is believed for the same reason raft's
// own RPCs are, the link (mutual TLS with the cluster's CA when the
// cluster uses it). A node can therefore only name a member of the
// configuration, and a removed node is refused; but, as with raft's RPCs,
// a holder of a cluster certificate could claim another member's id:
// the certificate is the cluster's trust boundary, not the node id.
//
// Each node with endpoints runs announceLoop: whenever the member list it
// has applied does not show exactly its endpoints (at start, after its
// endpoints changed across a restart, after the list lost them), it
// announces them to the leader it knows, with back-off, until its own
// copy of the list shows them.

// announceMagic is the first byte of an announcement (relayMagic is
// 0xD1, raft's RPC types 0 to 4).
const announceMagic = 0xD2

// announceVersion is the message format.
const announceVersion = 1

// Bounds of an announcement.
const (
	maxAnnounceEndpoints = 32
	maxAnnounceField     = 4096
)

// announceTimeout bounds one announcement, answer included.
const announceTimeout = 5 * time.Second

// Announcement back-off: the first retry after a failure waits
// announceMinBackoff, doubling up to announceMaxBackoff; a node whose
// endpoints are published looks at its copy of the list every
// announcePoll.
const (
	announcePoll       = 500 * time.Millisecond
	announceMinBackoff = 100 * time.Millisecond
	announceMaxBackoff = 3 * time.Second
)

// Answer status bytes.
const (
	announceOK      = 0
	announceRefused = 1
)

// announceHandler decides an announcement on the receiving node: nil
// error means the endpoints are in the replicated member list.
type announceHandler func(ctx context.Context, node string, endpoints []string) error

// errAnnounce reports a malformed announcement.
var errAnnounce = errors.New("cluster: malformed announcement")

// setAnnounceHandler makes the stream hand announcements to h (nil
// refuses them all).
func (s *Stream) setAnnounceHandler(h announceHandler) {
	if h == nil {
		s.announce.Store(nil)
		return
	}
	s.announce.Store(&h)
}

// serveAnnounce reads one announcement from c (after announceMagic),
// passes it to the handler and writes the answer. c's deadline, set by
// open, bounds it all.
func (s *Stream) serveAnnounce(c net.Conn) {
	br := bufio.NewReaderSize(c, 512)
	node, eps, err := readAnnouncement(br)
	if err != nil {
		return
	}
	var res error
	if h := s.announce.Load(); h == nil {
		res = errors.New("this node takes no announcements")
	} else {
		ctx, cancel := context.WithTimeout(s.ctx, announceTimeout)
		res = (*h)(ctx, node, eps)
		cancel()
	}
	out := []byte{announceOK}
	if res != nil {
		out = appendField([]byte{announceRefused}, res.Error())
	}
	_, _ = c.Write(out)
}

func readAnnouncement(br *bufio.Reader) (string, []string, error) {
	v, err := br.ReadByte()
	if err != nil {
		return "", nil, err
	}
	if v != announceVersion {
		return "", nil, fmt.Errorf("%w: version %d", errAnnounce, v)
	}
	node, err := readField(br)
	if err != nil {
		return "", nil, err
	}
	n, err := binary.ReadUvarint(br)
	if err != nil || n > maxAnnounceEndpoints {
		return "", nil, fmt.Errorf("%w: endpoint count", errAnnounce)
	}
	eps := make([]string, n)
	for i := range eps {
		if eps[i], err = readField(br); err != nil {
			return "", nil, err
		}
	}
	return node, eps, nil
}

func readField(br *bufio.Reader) (string, error) {
	n, err := binary.ReadUvarint(br)
	if err != nil {
		return "", fmt.Errorf("%w: %w", errAnnounce, err)
	}
	if n > maxAnnounceField {
		return "", fmt.Errorf("%w: field of %d bytes", errAnnounce, n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(br, b); err != nil {
		return "", fmt.Errorf("%w: %w", errAnnounce, err)
	}
	return string(b), nil
}

func appendField(b []byte, f string) []byte {
	b = binary.AppendUvarint(b, uint64(len(f)))
	return append(b, f...)
}

// sendAnnouncement tells the node at address that node's client
// endpoints are eps, and waits for its answer: nil once they are in the
// replicated member list. ctx ending aborts it.
func (s *Stream) sendAnnouncement(ctx context.Context, address raft.ServerAddress, node string, eps []string) error {
	if len(eps) > maxAnnounceEndpoints {
		return fmt.Errorf("cluster: %d endpoints to announce, at most %d", len(eps), maxAnnounceEndpoints)
	}
	msg := appendField([]byte{announceMagic, announceVersion}, node)
	msg = binary.AppendUvarint(msg, uint64(len(eps)))
	for _, e := range eps {
		msg = appendField(msg, e)
	}
	for _, f := range append([]string{node}, eps...) {
		if len(f) > maxAnnounceField {
			return fmt.Errorf("cluster: announcement field of %d bytes", len(f))
		}
	}
	c, err := s.Dial(address, announceTimeout)
	if err != nil {
		return err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	_ = c.SetDeadline(time.Now().Add(announceTimeout))
	if _, err := c.Write(msg); err != nil {
		return fmt.Errorf("cluster: announce to %s: %w", address, err)
	}
	br := bufio.NewReaderSize(c, 256)
	st, err := br.ReadByte()
	if err != nil {
		return fmt.Errorf("cluster: announce to %s: %w", address, err)
	}
	if st == announceOK {
		return nil
	}
	reason, err := readField(br)
	if err != nil {
		return fmt.Errorf("cluster: announce to %s: %w", address, err)
	}
	return fmt.Errorf("cluster: announce to %s: refused: %s", address, reason)
}

// handleAnnounce is the leader's side: it records node's endpoints if
// node is another member of the configuration.
func (r *Replica) handleAnnounce(ctx context.Context, node string, eps []string) error {
	if !r.Leading() {
		return ErrNotLeader
	}
	if len(eps) == 0 {
		return errors.New("no endpoints")
	}
	if node == r.node.ID() {
		return fmt.Errorf("%s is this node's own id", node)
	}
	if !r.isMember(node) {
		return fmt.Errorf("%s is not a member", node)
	}
	if r.published(node, eps) {
		return nil
	}
	if _, err := r.Propose(ctx, &SetMember{Node: node, Endpoints: eps}); err != nil {
		return err
	}
	return nil
}

// isMember reports whether id is in the latest raft configuration.
func (r *Replica) isMember(id string) bool {
	f := r.node.Raft().GetConfiguration()
	if f.Error() != nil {
		return false
	}
	for _, s := range f.Configuration().Servers {
		if string(s.ID) == id {
			return true
		}
	}
	return false
}

// published reports whether the applied member list gives node exactly
// the endpoints eps.
func (r *Replica) published(node string, eps []string) bool {
	for _, m := range r.st.Members() {
		if m.Node == node {
			return slices.Equal(m.Endpoints, eps)
		}
	}
	return false
}

// announceLoop publishes this node's endpoints until its copy of the
// member list shows them, and again whenever it stops showing them.
func (r *Replica) announceLoop(ctx context.Context) {
	defer r.wg.Done()
	backoff := announceMinBackoff
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		wait := announcePoll
		if !r.published(r.node.ID(), r.cfg.Endpoints) {
			if err := r.announce(ctx); err != nil {
				wait = backoff
				backoff = min(2*backoff, announceMaxBackoff)
			} else {
				// Announced: the entry reaches this node's copy within
				// a heartbeat or so.
				wait = announceMinBackoff
				backoff = announceMinBackoff
			}
		} else {
			backoff = announceMinBackoff
		}
		t.Reset(wait)
	}
}

// announce publishes this node's endpoints once: proposed directly when
// it leads, sent to the leader it knows otherwise.
func (r *Replica) announce(ctx context.Context) error {
	if r.Leading() {
		ctx, cancel := context.WithTimeout(ctx, announceTimeout)
		defer cancel()
		_, err := r.Propose(ctx, &SetMember{Node: r.node.ID(), Endpoints: r.cfg.Endpoints})
		return err
	}
	addr, id := r.node.Raft().LeaderWithID()
	if addr == "" || string(id) == r.node.ID() {
		return errors.New("cluster: no leader to announce to")
	}
	return r.node.Stream().sendAnnouncement(ctx, addr, r.node.ID(), r.cfg.Endpoints)
}
