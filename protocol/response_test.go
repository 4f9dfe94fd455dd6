package protocol

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

var allStatuses = []struct {
	s    Status
	word string
}{
	{StatusOK, "ok"},
	{StatusAcquired, "acquired"},
	{StatusQueued, "queued"},
	{StatusTimeout, "timeout"},
	{StatusError, "error"},
	{StatusErrAuth, "error_auth"},
	{StatusErrMaxLocks, "error_max_locks"},
	{StatusErrMaxWaiters, "error_max_waiters"},
	{StatusErrLimitMismatch, "error_limit_mismatch"},
	{StatusErrNotEnqueued, "error_not_enqueued"},
	{StatusErrAlreadyEnqueued, "error_already_enqueued"},
	{StatusErrLeaseExpired, "error_lease_expired"},
	{StatusErrDraining, "error_draining"},
	{StatusSignal, "sig"},
	{StatusErrSession, "error_session"},
}

func TestStatusStrings(t *testing.T) {
	if len(allStatuses) != numStatuses-1 {
		t.Fatalf("table has %d statuses, package %d", len(allStatuses), numStatuses-1)
	}
	for _, tt := range allStatuses {
		if tt.s.String() != tt.word {
			t.Errorf("%d.String() = %q, want %q", tt.s, tt.s.String(), tt.word)
		}
		if ParseStatus([]byte(tt.word)) != tt.s {
			t.Errorf("ParseStatus(%q) = %v", tt.word, ParseStatus([]byte(tt.word)))
		}
	}
	if Status(0).String() != "Status(0)" || Status(99).String() != "Status(99)" {
		t.Errorf("undefined statuses: %q %q", Status(0).String(), Status(99).String())
	}
	for _, s := range []string{"", "OK", "ok ", "err", "error_", "signal", "status(0)"} {
		if ParseStatus([]byte(s)) != 0 {
			t.Errorf("ParseStatus(%q) = %v, want 0", s, ParseStatus([]byte(s)))
		}
	}
}

func TestEncoders(t *testing.T) {
	tests := []struct {
		name string
		got  []byte
		want string
	}{
		{"status ok", AppendStatus(nil, StatusOK), "ok\n"},
		{"status timeout", AppendStatus(nil, StatusTimeout), "timeout\n"},
		{"status queued", AppendStatus(nil, StatusQueued), "queued\n"},
		{"status draining", AppendStatus(nil, StatusErrDraining), "error_draining\n"},
		{"status undefined is error", AppendStatus(nil, 0), "error\n"},
		{"status out of range is error", AppendStatus(nil, 200), "error\n"},
		{"status appends", AppendStatus([]byte("x\n"), StatusError), "x\nerror\n"},
		{"grant ok", AppendGrant(nil, StatusOK, "0123456789abcdef0123456789abcdef", 30*time.Second), "ok 0123456789abcdef0123456789abcdef 30\n"},
		{"grant acquired", AppendGrant(nil, StatusAcquired, "tok", 60*time.Second), "acquired tok 60\n"},
		{"grant rounds 1.2s up", AppendGrant(nil, StatusOK, "t", 1200*time.Millisecond), "ok t 2\n"},
		{"grant rounds 1ns up", AppendGrant(nil, StatusOK, "t", 1), "ok t 1\n"},
		{"grant 999ms is 1", AppendGrant(nil, StatusOK, "t", 999*time.Millisecond), "ok t 1\n"},
		{"grant zero", AppendGrant(nil, StatusOK, "t", 0), "ok t 0\n"},
		{"grant max", AppendGrant(nil, StatusOK, "t", MaxSeconds*time.Second), "ok t 9223372036\n"},
		{"grant appends", AppendGrant([]byte("sig a b\n"), StatusOK, "t", time.Second), "sig a b\nok t 1\n"},
		{"ok int", AppendOKInt(nil, 3), "ok 3\n"},
		{"ok int zero", AppendOKInt(nil, 0), "ok 0\n"},
		{"ok int large", AppendOKInt(nil, 9223372036), "ok 9223372036\n"},
		{"ok body", AppendOKBody(nil, []byte(`{"connections":1,"locks":[]}`)), `ok {"connections":1,"locks":[]}` + "\n"},
		{"signal", AppendSignal(nil, []byte("jobs.new"), []byte("hello world")), "sig jobs.new hello world\n"},
		{"signal keeps leading spaces", AppendSignal(nil, []byte("a.b"), []byte(" payload with spaces")), "sig a.b  payload with spaces\n"},
	}
	for _, tt := range tests {
		if string(tt.got) != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, tt.got, tt.want)
		}
	}
}

func TestEncodersNoAllocs(t *testing.T) {
	dst := make([]byte, 0, 256)
	tok := "0123456789abcdef0123456789abcdef"
	body := []byte(`{"connections":1}`)
	ch, pay := []byte("jobs.new"), []byte("hello")
	n := testing.AllocsPerRun(1000, func() {
		dst = AppendStatus(dst[:0], StatusTimeout)
		dst = AppendGrant(dst, StatusOK, tok, 30*time.Second)
		dst = AppendOKInt(dst, 42)
		dst = AppendOKBody(dst, body)
		dst = AppendSignal(dst, ch, pay)
		dst = AppendRequest(dst, CmdLock, "k", "10 30")
	})
	if n != 0 {
		t.Fatalf("encoders allocate %v times", n)
	}
}

func TestParseResponse(t *testing.T) {
	tests := []struct {
		name string
		line string
		want Response
	}{
		{"bare ok", "ok", Response{Status: StatusOK}},
		{"ok token ttl", "ok 0123456789abcdef0123456789abcdef 30", Response{Status: StatusOK, Token: "0123456789abcdef0123456789abcdef", TTL: 30 * time.Second}},
		{"acquired token ttl", "acquired tok 60", Response{Status: StatusAcquired, Token: "tok", TTL: 60 * time.Second}},
		{"ok int (renew / receivers)", "ok 3", Response{Status: StatusOK, N: 3, HasN: true}},
		{"ok zero receivers", "ok 0", Response{Status: StatusOK, N: 0, HasN: true}},
		{"ok json", `ok {"json":1}`, Response{Status: StatusOK, Body: []byte(`{"json":1}`)}},
		{"ok json with spaces and digits", `ok {"a b": 5}`, Response{Status: StatusOK, Body: []byte(`{"a b": 5}`)}},
		{"ok json array", `ok [1 2]`, Response{Status: StatusOK, Body: []byte(`[1 2]`)}},
		{"ok other text is a body", "ok hello there world", Response{Status: StatusOK, Body: []byte("hello there world")}},
		{"ok empty body", "ok ", Response{Status: StatusOK, Body: []byte{}}},
		{"queued", "queued", Response{Status: StatusQueued}},
		{"timeout", "timeout", Response{Status: StatusTimeout}},
		{"error", "error", Response{Status: StatusError}},
		{"error_auth", "error_auth", Response{Status: StatusErrAuth}},
		{"error_max_locks", "error_max_locks", Response{Status: StatusErrMaxLocks}},
		{"error_max_waiters", "error_max_waiters", Response{Status: StatusErrMaxWaiters}},
		{"error_limit_mismatch", "error_limit_mismatch", Response{Status: StatusErrLimitMismatch}},
		{"error_not_enqueued", "error_not_enqueued", Response{Status: StatusErrNotEnqueued}},
		{"error_already_enqueued", "error_already_enqueued", Response{Status: StatusErrAlreadyEnqueued}},
		{"error_lease_expired", "error_lease_expired", Response{Status: StatusErrLeaseExpired}},
		{"error_draining", "error_draining", Response{Status: StatusErrDraining}},
		{"sig", "sig jobs.new hello", Response{Status: StatusSignal, Channel: "jobs.new", Payload: []byte("hello")}},
		{"sig payload keeps leading spaces", "sig a.b  payload with spaces", Response{Status: StatusSignal, Channel: "a.b", Payload: []byte(" payload with spaces")}},
		{"sig payload keeps trailing spaces", "sig a.b x  ", Response{Status: StatusSignal, Channel: "a.b", Payload: []byte("x  ")}},
		{"sig empty payload", "sig a.b ", Response{Status: StatusSignal, Channel: "a.b", Payload: []byte{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := Response{Token: "stale", N: 9, HasN: true}
			if err := ParseResponse([]byte(tt.line), &resp); err != nil {
				t.Fatalf("ParseResponse(%q): %v", tt.line, err)
			}
			if !reflect.DeepEqual(resp, tt.want) {
				t.Fatalf("ParseResponse(%q):\n got  %+v\n want %+v", tt.line, resp, tt.want)
			}
		})
	}
}

func TestParseResponseErrors(t *testing.T) {
	for _, line := range []string{
		"", " ", "OK", "Ok", "foo", "ok\r", " ok", "okay",
		"timeout x", "queued 1", "error oops", "error_auth ", "error_draining now",
		"acquired", "acquired ", "acquired tok", "acquired tok x", "acquired  5", "acquired tok -1", "acquired tok 9223372037",
		"sig", "sig ", "sig chan", "sig  payload",
	} {
		resp := Response{Token: "stale"}
		err := ParseResponse([]byte(line), &resp)
		if !errors.Is(err, ErrBadResponse) {
			t.Errorf("ParseResponse(%q) = %v, want ErrBadResponse", line, err)
		}
		if !reflect.DeepEqual(resp, Response{}) {
			t.Errorf("ParseResponse(%q) left %+v", line, resp)
		}
	}
}

func TestParseResponseErrorText(t *testing.T) {
	var resp Response
	err := ParseResponse([]byte("bogus "+strings.Repeat("x", 500)), &resp)
	if !errors.Is(err, ErrBadResponse) || len(err.Error()) > 120 || !strings.HasPrefix(err.Error(), "protocol: bad response: ") {
		t.Fatalf("error text %q", err)
	}
}

func TestParseResponseCopies(t *testing.T) {
	line := []byte(`ok {"json":1}`)
	var resp Response
	if err := ParseResponse(line, &resp); err != nil {
		t.Fatal(err)
	}
	sig := []byte("sig c hello")
	var push Response
	if err := ParseResponse(sig, &push); err != nil {
		t.Fatal(err)
	}
	for i := range line {
		line[i] = 'X'
	}
	for i := range sig {
		sig[i] = 'X'
	}
	if string(resp.Body) != `{"json":1}` || string(push.Payload) != "hello" || push.Channel != "c" {
		t.Fatalf("results alias the input: %q %q %q", resp.Body, push.Payload, push.Channel)
	}
}

// TestEncodeParseRoundTrip: whatever the server encoders write, the client
// parser reads back.
func TestEncodeParseRoundTrip(t *testing.T) {
	lines := [][]byte{
		AppendGrant(nil, StatusOK, "0123456789abcdef0123456789abcdef", 30*time.Second),
		AppendGrant(nil, StatusAcquired, "0123456789abcdef0123456789abcdef", 1500*time.Millisecond),
		AppendOKInt(nil, 7),
		AppendOKBody(nil, []byte(`{"connections":0,"locks":[],"semaphores":[]}`)),
		AppendSignal(nil, []byte("a.b"), []byte("  two leading")),
	}
	for _, tt := range allStatuses {
		if tt.s != StatusAcquired && tt.s != StatusSignal {
			lines = append(lines, AppendStatus(nil, tt.s))
		}
	}
	want := []Response{
		{Status: StatusOK, Token: "0123456789abcdef0123456789abcdef", TTL: 30 * time.Second},
		{Status: StatusAcquired, Token: "0123456789abcdef0123456789abcdef", TTL: 2 * time.Second},
		{Status: StatusOK, N: 7, HasN: true},
		{Status: StatusOK, Body: []byte(`{"connections":0,"locks":[],"semaphores":[]}`)},
		{Status: StatusSignal, Channel: "a.b", Payload: []byte("  two leading")},
	}
	for _, tt := range allStatuses {
		if tt.s != StatusAcquired && tt.s != StatusSignal {
			want = append(want, Response{Status: tt.s})
		}
	}
	d := NewDecoder(bytes.NewReader(bytes.Join(lines, nil)))
	for i := range lines {
		line, err := d.ReadLine(1 << 20)
		if err != nil {
			t.Fatal(err)
		}
		var resp Response
		if err := ParseResponse(line, &resp); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		if !reflect.DeepEqual(resp, want[i]) {
			t.Fatalf("line %q:\n got  %+v\n want %+v", line, resp, want[i])
		}
	}
}
