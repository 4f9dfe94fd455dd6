package cluster

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// Relayed client connections. A follower that accepts a client
// connection relays it, whole, to the leader: it opens a connection to the
// leader's raft address (mutual TLS between nodes, so the leader knows
// the header comes from a member), sends relayMagic and a header saying
// who the client is, then copies bytes both ways. The leader serves the
// connection as if the client had dialled it, trusting the header for the
// client's remote address, transport and the identity the follower
// authenticated. When leadership moves, the leader closes its relayed
// connections and the client reconnects.

// relayMagic is the first byte of a relay connection. raft's own RPC
// connections start with an RPC type (0 to 4), so one port serves both.
const relayMagic = 0xD1

// relayVersion is the header format.
const relayVersion = 1

// maxRelayField bounds each header field (a credential may be as long as
// an auth token).
const maxRelayField = 64 << 10

// RelayInfo describes the client of a relayed connection, as the
// relaying node saw it.
type RelayInfo struct {
	// Remote is the client's address ("host:port", or Unix credentials).
	Remote string
	// Transport is the listener's transport name on the relaying node.
	Transport string
	// Identity is the identity the relaying node authenticated at the
	// transport level (client certificate, Unix uid), "" if none. It is
	// believed only on a mutual-TLS stream; over plain TCP the receiving
	// stream clears it. A token handshake, if any, travels in the relayed
	// bytes and is checked by the leader.
	Identity string
	// Node is the relaying node's id.
	Node string
	// Credential is the token the client authenticated with on the
	// relaying node, "" if none: the receiving node checks it itself.
	Credential string
}

// RelayConn is a relayed client connection as the leader receives it.
type RelayConn struct {
	net.Conn
	Info RelayInfo
}

// DialRelay opens a relay connection to the node at address and sends
// the header; the caller then copies the client's bytes through it.
func (s *Stream) DialRelay(address raft.ServerAddress, info RelayInfo, timeout time.Duration) (net.Conn, error) {
	c, err := s.Dial(address, timeout)
	if err != nil {
		return nil, err
	}
	hdr := []byte{relayMagic, relayVersion}
	for _, f := range []string{info.Remote, info.Transport, info.Identity, info.Node, info.Credential} {
		if len(f) > maxRelayField {
			c.Close()
			return nil, fmt.Errorf("cluster: relay header field of %d bytes", len(f))
		}
		hdr = binary.AppendUvarint(hdr, uint64(len(f)))
		hdr = append(hdr, f...)
	}
	_ = c.SetWriteDeadline(time.Now().Add(timeout))
	if _, err := c.Write(hdr); err != nil {
		c.Close()
		return nil, fmt.Errorf("cluster: relay to %s: %w", address, err)
	}
	_ = c.SetWriteDeadline(time.Time{})
	return c, nil
}

// errRelayHeader reports a malformed relay header.
var errRelayHeader = errors.New("cluster: malformed relay header")

// readRelayHeader reads the header after relayMagic. Bytes the client
// sent after the header stay readable from the returned connection.
func readRelayHeader(c net.Conn) (*RelayConn, error) {
	br := bufio.NewReaderSize(c, 512)
	v, err := br.ReadByte()
	if err != nil {
		return nil, err
	}
	if v != relayVersion {
		return nil, fmt.Errorf("%w: version %d", errRelayHeader, v)
	}
	var f [5]string
	for i := range f {
		n, err := binary.ReadUvarint(br)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", errRelayHeader, err)
		}
		if n > maxRelayField {
			return nil, fmt.Errorf("%w: field of %d bytes", errRelayHeader, n)
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(br, b); err != nil {
			return nil, fmt.Errorf("%w: %w", errRelayHeader, err)
		}
		f[i] = string(b)
	}
	return &RelayConn{
		Conn: &bufferedConn{Conn: c, r: br},
		Info: RelayInfo{Remote: f[0], Transport: f[1], Identity: f[2], Node: f[3], Credential: f[4]},
	}, nil
}

// bufferedConn reads through the reader that parsed the header.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }
