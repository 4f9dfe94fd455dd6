package server

import (
	"testing"

	"github.com/dflockd/dflockd/core"
)

func TestSmokeLockRelease(t *testing.T) {
	ts := start(t, Options{}, core.Options{})
	c := ts.dial(t)
	tok := c.Token("l", "k", "10", "ok")
	c.Expect("r", "k", tok, "ok")
	c.Expect("ping", "_", "", "ok")
}
