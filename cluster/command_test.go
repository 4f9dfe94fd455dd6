package cluster

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dflockd/dflockd/core"
)

var tokA = core.Token([]byte("00000000000000a1ffeeddccbbaa9988"))

// sampleCommands has one command of each type with every field set.
func sampleCommands() []Command {
	seed := Seed{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	at := int64(1_764_000_000_123_456_789)
	return []Command{
		&OpenSession{At: at, ID: sid(7), Secret: Secret{9, 8, 7}, TTL: 15 * sec, Named: true, Identity: "alice"},
		&OpenSession{At: 0, ID: sid(8)},
		&CloseSession{At: at, Seed: seed, ID: sid(7)},
		&Acquire{At: at, Seed: seed, Session: sid(7), Kind: sem, Key: "jobs", Limit: 3, TTL: 33 * sec, Mode: Enqueue, Place: math.MaxUint64},
		&Acquire{At: at, Seed: seed, Session: sid(7), Kind: lock, Key: strings.Repeat("k", MaxKeyLen), Mode: Try, Place: 1},
		&Release{At: at, Seed: seed, Kind: lock, Key: "k", Token: tokA},
		&Cancel{At: at, Seed: seed, Kind: sem, Key: "k", Place: 77, KeepGrant: true},
		&Collect{At: at, Session: sid(7), Kind: sem, Key: "k"},
		&Park{At: at, Seed: seed, Kind: lock, Key: "k", Place: 5},
		&Evict{At: at, Seed: seed, Kind: lock, Key: "k", Tokens: []core.Token{tokA, makeToken(3, &seed)}},
		&SetPolicy{At: at, Policy: Policy{DefaultTTL: 33 * sec, MaxKeys: 1024, MaxWaiters: 9, MaxSessions: 10000, KeepOnDisconnect: true}},
		&SetMember{At: at, Node: "n1", Endpoints: []string{"tcp://127.0.0.1:6388", "unix:///run/dflockd.sock"}},
		&SetMember{At: at, Node: "n2"},
		&Retime{At: at, Kind: sem, Key: "k", Token: tokA, TTL: time.Hour},
	}
}

func TestCommandRoundTrip(t *testing.T) {
	for _, c := range sampleCommands() {
		b, err := Encode(c)
		if err != nil {
			t.Fatalf("Encode(%#v): %v", c, err)
		}
		if b[0] != commandVersion {
			t.Fatalf("version byte %d", b[0])
		}
		d, err := Decode(b)
		if err != nil {
			t.Fatalf("Decode(Encode(%#v)): %v", c, err)
		}
		if !reflect.DeepEqual(c, d) {
			t.Fatalf("round trip: %#v became %#v", c, d)
		}
		// Every proper prefix is truncated, and a byte more is trailing.
		for n := 0; n < len(b); n++ {
			if _, err := Decode(b[:n]); !errors.Is(err, ErrCommand) {
				t.Fatalf("Decode of %T cut to %d/%d bytes: %v", c, n, len(b), err)
			}
		}
		if _, err := Decode(append(bytes.Clone(b), 0)); err == nil || !strings.Contains(err.Error(), "trailing") {
			t.Fatalf("Decode with a trailing byte: %v", err)
		}
	}
}

func TestCommandIsCompact(t *testing.T) {
	c := &Release{At: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano(), Kind: lock, Key: "orders:42", Token: tokA}
	b, _ := Encode(c)
	// version, op, at (9), seed (16), kind, key (1+9), token (16)
	if len(b) != 2+9+16+1+10+16 {
		t.Fatalf("a release takes %d bytes", len(b))
	}
}

func TestDecodeRejects(t *testing.T) {
	good, _ := Encode(&Acquire{At: 5, Session: sid(1), Kind: lock, Key: "k", Mode: Queue, Place: 9})
	// Offsets in good: 0 version, 1 op, 2 at, 3..18 seed, 19..26 session,
	// 27 kind, 28 key length, 29 key, 30 limit, 31 ttl, 32 mode, 33 place.
	with := func(i int, v byte) []byte { b := bytes.Clone(good); b[i] = v; return b }
	evict, _ := Encode(&Evict{Kind: lock, Key: "k", Tokens: []core.Token{tokA}})
	evictAt := len(evict) - 17 // the token count
	member, _ := Encode(&SetMember{Node: "n", Endpoints: []string{"e"}})
	cases := []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "truncated"},
		{"unknown version", with(0, 2), "unknown format version 2"},
		{"unknown op", with(1, 99), "unknown op 99"},
		{"op zero", with(1, 0), "unknown op 0"},
		{"bad kind", with(27, 2), "kind 2"},
		{"zero session", append(append(bytes.Clone(good[:19]), make([]byte, 8)...), good[27:]...), "zero session id"},
		{"empty key", append(with(28, 0)[:29], good[30:]...), "empty string"},
		{"oversize key", append(append([]byte{}, good[:28]...), 0x81, 0x02), "above 256"},
		{"bad mode", with(32, 3), "mode 3"},
		{"place zero", with(33, 0), "place 0"},
		{"non-minimal integer", append(append(bytes.Clone(good[:2]), 0x85, 0x00), good[3:]...), "non-minimal"},
		{"integer overflow", append(bytes.Clone(good[:2]), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f), "overflows"},
		{"time above int64", append(bytes.Clone(good[:2]), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01), "above"},
		{"bad boolean", func() []byte {
			b, _ := Encode(&Cancel{Kind: lock, Key: "k", Place: 1})
			b[len(b)-1] = 2
			return b
		}(), "boolean byte 2"},
		{"no tokens", append(bytes.Clone(evict[:evictAt]), 0), "no tokens"},
		{"more tokens than bytes", append(bytes.Clone(evict[:evictAt]), 0x80, 0x80, 0x04), "truncated"},
		{"member with empty endpoint", append(bytes.Clone(member[:len(member)-2]), 0), "empty string"},
		{"too many endpoints", append(bytes.Clone(member[:len(member)-3]), maxEndpoints+1), "above"},
	}
	for _, tc := range cases {
		_, err := Decode(tc.b)
		if !errors.Is(err, ErrCommand) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Decode(%x) = %v, want an error containing %q", tc.name, tc.b, err, tc.want)
		}
	}
}

func TestEncodeRejects(t *testing.T) {
	bad := core.Token([]byte("00000000000000A1ffeeddccbbaa9988"))
	cases := []Command{
		nil,
		&Acquire{Session: sid(1), Kind: 2, Key: "k", Place: 1},
		&Acquire{Session: sid(1), Kind: lock, Key: "", Place: 1},
		&Acquire{Session: sid(1), Kind: lock, Key: strings.Repeat("k", MaxKeyLen+1), Place: 1},
		&Acquire{Session: sid(1), Kind: lock, Key: "k", Place: 0},
		&Acquire{Session: sid(1), Kind: lock, Key: "k", Place: 1, Mode: 3},
		&Acquire{Session: sid(1), Kind: lock, Key: "k", Place: 1, TTL: -1},
		&Acquire{Session: sid(1), Kind: lock, Key: "k", Place: 1, Limit: -1},
		&Release{Kind: lock, Key: "k", Token: bad},
		&Evict{Kind: lock, Key: "k"},
		&Evict{Kind: lock, Key: "k", Tokens: []core.Token{bad}},
		&SetPolicy{Policy: Policy{MaxKeys: -1}},
		&SetMember{Node: ""},
		&SetMember{Node: "n", Endpoints: []string{""}},
		&OpenSession{ID: sid(1), At: -1},
		&OpenSession{},
		&Acquire{Kind: lock, Key: "k", Place: 1},
		&Collect{Kind: lock, Key: "k"},
		&CloseSession{},
		&OpenSession{ID: sid(1), Identity: strings.Repeat("i", maxIdentityLen+1)},
	}
	for _, c := range cases {
		if _, err := Encode(c); !errors.Is(err, ErrCommand) {
			t.Errorf("Encode(%#v) = %v, want ErrCommand", c, err)
		}
	}
}

// FuzzDecodeCommand: Decode never panics; what it accepts re-encodes to
// the same bytes and decodes to the same command; and applying it to a
// state (fresh, and one with sessions and keys) never panics or breaks
// the state's invariants.
func FuzzDecodeCommand(f *testing.F) {
	for _, c := range sampleCommands() {
		b, _ := Encode(c)
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{commandVersion})
	f.Add([]byte{commandVersion, opEvict, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Decode(b)
		if err != nil {
			if c != nil || !errors.Is(err, ErrCommand) {
				t.Fatalf("Decode error %v with command %#v", err, c)
			}
			return
		}
		b2, err := Encode(c)
		if err != nil {
			t.Fatalf("Encode(Decode(%x)): %v", b, err)
		}
		if !bytes.Equal(b, b2) {
			t.Fatalf("Encode(Decode(%x)) = %x", b, b2)
		}
		c2, err := Decode(b2)
		if err != nil || !reflect.DeepEqual(c, c2) {
			t.Fatalf("Decode(Encode(%#v)) = %#v, %v", c, c2, err)
		}
		h := newHarness(t)
		h.s.Apply(c)
		checkInvariants(t, h.s)
		h = newHarness(t)
		h.open(1, true)
		h.open(7, false)
		h.mustGrant(sid(1), lock, "k", 0, Enqueue)
		h.mustQueue(sid(7), lock, "k", 0, Queue)
		h.s.Apply(c)
		checkInvariants(t, h.s)
	})
}

func BenchmarkEncodeDecode(b *testing.B) {
	c := &Acquire{At: 1_764_000_000_123_456_789, Seed: Seed{1}, Session: sid(7), Kind: lock, Key: "orders:42", TTL: 33 * sec, Mode: Queue, Place: 1 << 40}
	buf := make([]byte, 0, 128)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		buf, err = AppendCommand(buf[:0], c)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Decode(buf); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(buf)), "bytes/cmd")
}
