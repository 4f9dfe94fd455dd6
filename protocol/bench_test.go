package protocol

import (
	"testing"
	"time"
)

// benchDecode decodes in, a single request, over and over from a reader
// that cycles one buffer.
func benchDecode(b *testing.B, in string) {
	d := NewDecoder(&repeatReader{data: []byte(in)})
	var req Request
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := d.ReadRequest(&req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReadRequest is the hot path: decoding a lock request.
func BenchmarkReadRequest(b *testing.B) {
	benchDecode(b, "l\nsome-lock-key\n10 30\n")
}

func BenchmarkReadRequestRelease(b *testing.B) {
	benchDecode(b, "r\nsome-lock-key\n0123456789abcdef0123456789abcdef\n")
}

func BenchmarkReadRequestSemLock(b *testing.B) {
	benchDecode(b, "sl\nsome-sem-key\n10 3 30\n")
}

func BenchmarkReadRequestSignal1K(b *testing.B) {
	benchDecode(b, "signal\nevents.jobs\n"+rep("p", 1024)+"\n")
}

func BenchmarkReadRequestSignal32K(b *testing.B) {
	benchDecode(b, "signal\nevents.jobs\n"+rep("p", 32<<10)+"\n")
}

func BenchmarkAppendGrant(b *testing.B) {
	dst := make([]byte, 0, 128)
	tok := "0123456789abcdef0123456789abcdef"
	b.ReportAllocs()
	for b.Loop() {
		dst = AppendGrant(dst[:0], StatusOK, tok, 30*time.Second)
	}
}

func BenchmarkAppendStatus(b *testing.B) {
	dst := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		dst = AppendStatus(dst[:0], StatusTimeout)
	}
}

func BenchmarkParseResponseGrant(b *testing.B) {
	line := []byte("ok 0123456789abcdef0123456789abcdef 30")
	var resp Response
	b.ReportAllocs()
	for b.Loop() {
		if err := ParseResponse(line, &resp); err != nil {
			b.Fatal(err)
		}
	}
}
