package main

import (
	"context"
	"io"
)

// MemoryCmd measures a dflockd binary's resident memory.
type MemoryCmd struct {
	ServerBin string `name:"server-bin" required:"" placeholder:"PATH" help:"dflockd binary to start (go build -o /tmp/dflockd ./cmd/dflockd)."`
	IdleConns int    `name:"idle-conns" default:"5000" help:"Idle TCP connections to open from this process."`
	HeldLocks int    `name:"held-locks" default:"1000000" help:"Locks to acquire and hold (keys of at most 16 bytes)."`
}

func (m *MemoryCmd) run(ctx context.Context, stdout, stderr io.Writer) error {
	return usagef("memory: not built yet")
}
