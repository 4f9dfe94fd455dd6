package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"

	"github.com/dflockd/dflockd/client"
)

// run fetches the server's stats and prints them as a table, or as the
// raw JSON object with --json.
func (c *StatsCmd) run(ctx context.Context, srv target, stdout io.Writer) error {
	conn, err := srv.dial(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	rctx, cancel := srv.request(ctx, "stats")
	defer cancel()
	raw, err := conn.StatsRaw(rctx)
	if err != nil {
		return srv.failed("stats", err)
	}
	var out bytes.Buffer
	if c.JSON {
		out.Write(raw)
		out.WriteByte('\n')
	} else {
		var st client.Stats
		if err := json.Unmarshal(raw, &st); err != nil {
			return fmt.Errorf("decode stats: %w", err)
		}
		writeStats(&out, &st)
	}
	if _, err := stdout.Write(out.Bytes()); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// writeStats prints st as one aligned table per section. Empty sections
// say "(none)"; a section the server cut says "truncated (showing N of
// M)".
func writeStats(w io.Writer, st *client.Stats) {
	fmt.Fprintf(w, "connections: %d   sessions: %d (%d detached)   slow consumers: %d\n",
		st.Connections, st.Sessions, st.DetachedSessions, st.SlowConsumers)
	tot := client.StatsTotals{ // a server without totals lists everything
		Locks: len(st.Locks), Semaphores: len(st.Semaphores), IdleLocks: len(st.IdleLocks),
		IdleSemaphores: len(st.IdleSemaphores), SignalChannels: len(st.SignalChannels), Clients: len(st.Clients),
	}
	if st.Totals != nil {
		tot = *st.Totals
	}

	section(w, "Locks", len(st.Locks), tot.Locks, "KEY\tOWNER\tLEASE LEFT\tWAITERS", func(tw io.Writer) {
		for _, l := range st.Locks {
			owner, lease := "-", "-"
			if l.OwnerConnID != 0 {
				owner = strconv.FormatUint(l.OwnerConnID, 10)
				lease = seconds(l.LeaseExpiresInS)
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\n", l.Key, owner, lease, l.Waiters)
		}
	})
	section(w, "Semaphores", len(st.Semaphores), tot.Semaphores, "KEY\tLIMIT\tHOLDERS\tWAITERS", func(tw io.Writer) {
		for _, s := range st.Semaphores {
			fmt.Fprintf(tw, "  %s\t%d\t%d\t%d\n", s.Key, s.Limit, s.Holders, s.Waiters)
		}
	})
	section(w, "Idle keys", len(st.IdleLocks)+len(st.IdleSemaphores), tot.IdleLocks+tot.IdleSemaphores, "KEY\tKIND\tIDLE", func(tw io.Writer) {
		for _, k := range st.IdleLocks {
			fmt.Fprintf(tw, "  %s\tlock\t%s\n", k.Key, seconds(k.IdleS))
		}
		for _, k := range st.IdleSemaphores {
			fmt.Fprintf(tw, "  %s\tsemaphore\t%s\n", k.Key, seconds(k.IdleS))
		}
	})
	section(w, "Signal channels", len(st.SignalChannels), tot.SignalChannels, "PATTERN\tGROUP\tLISTENERS", func(tw io.Writer) {
		for _, c := range st.SignalChannels {
			fmt.Fprintf(tw, "  %s\t%s\t%d\n", c.Pattern, dash(c.Group), c.Listeners)
		}
	})
	section(w, "Clients", len(st.Clients), tot.Clients, "ID\tTRANSPORT\tREMOTE\tIDENTITY\tNAME", func(tw io.Writer) {
		for _, c := range st.Clients {
			fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%s\n", c.ID, dash(c.Transport), dash(c.Remote), dash(c.Identity), dash(c.Name))
		}
	})
}

// section prints a titled table of n of total entries: the header and the
// rows written by rows (each indented by two spaces), aligned, or "(none)"
// when there are none.
func section(w io.Writer, title string, n, total int, header string, rows func(io.Writer)) {
	if total > n {
		fmt.Fprintf(w, "\n%s truncated (showing %d of %d)\n", title, n, total)
	} else {
		fmt.Fprintf(w, "\n%s (%d)\n", title, n)
	}
	if n == 0 {
		if total > 0 {
			return
		}
		fmt.Fprintln(w, "  (none)")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  "+header)
	rows(tw)
	tw.Flush()
}

// seconds formats a number of seconds with one decimal.
func seconds(s float64) string { return strconv.FormatFloat(s, 'f', 1, 64) + "s" }

// dash returns s, or "-" when it is empty.
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
