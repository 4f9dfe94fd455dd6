package auth

import (
	"context"
	"errors"
	"testing"
)

func TestTokenAcceptsOnlyTheSecret(t *testing.T) {
	a := Token("s3cret")
	cases := []struct {
		cred string
		ok   bool
	}{
		{"s3cret", true},
		{"s3cre", false},
		{"s3cret ", false},
		{"", false},
		{"S3CRET", false},
		{"s3cret-and-more", false},
	}
	for _, c := range cases {
		id, err := a.Authenticate(context.Background(), Peer{}, c.cred)
		if c.ok {
			if err != nil || id.Name == "" {
				t.Errorf("Authenticate(%q) = %v, %v; want accepted", c.cred, id, err)
			}
			continue
		}
		if !errors.Is(err, ErrDenied) {
			t.Errorf("Authenticate(%q) err = %v; want ErrDenied", c.cred, err)
		}
	}
}

func BenchmarkToken(b *testing.B) {
	a := Token("a-reasonably-long-shared-secret-value")
	b.ReportAllocs()
	for b.Loop() {
		_, _ = a.Authenticate(context.Background(), Peer{}, "a-reasonably-long-shared-secret-value")
	}
}
