package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/dflockd/dflockd/client"
)

// A list the server cut is shown as "truncated (showing N of M)"; complete
// lists, and answers without totals (1.x servers), keep the plain count.
func TestWriteStatsTruncated(t *testing.T) {
	st := &client.Stats{
		Locks:          []client.LockStat{{Key: "a", OwnerConnID: 1}, {Key: "b", OwnerConnID: 2}},
		Semaphores:     []client.SemaphoreStat{},
		IdleLocks:      []client.IdleStat{},
		IdleSemaphores: []client.IdleStat{},
		SignalChannels: []client.ChannelStat{},
		Clients:        []client.ClientStat{{ID: 1}},
		Totals:         &client.StatsTotals{Locks: 1024, SignalChannels: 100000, Clients: 1},
		Truncated:      true,
	}
	var out bytes.Buffer
	writeStats(&out, st)
	got := out.String()
	for _, want := range []string{
		"Locks truncated (showing 2 of 1024)\n",
		"Semaphores (0)\n  (none)\n",
		"Signal channels truncated (showing 0 of 100000)\n\n",
		"Clients (1)\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}

	st.Totals, st.Truncated = nil, false
	out.Reset()
	writeStats(&out, st)
	if got := out.String(); strings.Contains(got, "truncated") || !strings.Contains(got, "Locks (2)\n") {
		t.Errorf("without totals:\n%s", got)
	}
}
