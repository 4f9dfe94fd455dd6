package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/term"

	"github.com/dflockd/dflockd/client"
	"github.com/dflockd/dflockd/internal/cliflag"
)

// TopCmd shows a live view of the server, refreshed like top(1).
//
// The work is split in three: sampling (one `stats` answer and the time it
// arrived), summarizing two successive samples into a topView (pure:
// rates, totals, the longest queues and the oldest holders) and drawing a
// view, either as a screen fitted to the terminal or as plain lines. Only
// the loops in this file touch the terminal.
type TopCmd struct {
	Interval cliflag.Seconds `name:"interval" short:"i" default:"2" placeholder:"DURATION" help:"Time between updates, in whole seconds (2, 2s, 1m; default 2s)."`
	Once     bool            `name:"once" help:"Print one snapshot and exit (ops/s needs two samples, so it shows -)."`
	JSON     bool            `name:"json" help:"With --once: print the sample as one JSON object, {\"time\":RFC 3339,\"stats\":the server's stats answer}."`
	Count    int             `name:"count" short:"n" default:"0" placeholder:"N" help:"Exit after N updates (0 = until q, Ctrl-C or SIGTERM)."`
	Keys     int             `name:"keys" short:"k" default:"5" placeholder:"N" help:"Keys listed in each table when stdout is not a terminal, and with --once (on a terminal the screen height decides)."`

	clock *topClock // nil = the real clock; tests inject one
}

// Help implements kong.HelpProvider.
func (TopCmd) Help() string {
	return `On a terminal, redraws a screen every --interval: connections (in all and
per transport), requests per second, held and waiting counts, then the keys
with the longest queues and the keys held the longest. q or Ctrl-C quits;
any other key refreshes at once. When stdout is not a terminal, prints one
summary line per interval, followed by the top --keys keys of each table as
indented lines, and never an escape code.

The counts come from the server's stats answer, whose lists hold at most
--stats-max-items entries each: when the server cut them, held and waiting
count the listed keys only, and the header says "N of M" keys listed.`
}

// Validate implements kong's validation hook.
func (c *TopCmd) Validate() error {
	switch {
	case c.Interval < 1:
		return errors.New("--interval must be at least 1s")
	case c.JSON && !c.Once:
		return errors.New("--json needs --once (a live view has no JSON form)")
	case c.Count < 0:
		return fmt.Errorf("--count must be >= 0, got %d", c.Count)
	case c.Keys < 1:
		return fmt.Errorf("--keys must be >= 1, got %d", c.Keys)
	}
	return nil
}

// topClock is what the loops read time from: the clock of the samples
// and the ticker between them. Tests inject a fake one.
type topClock struct {
	now  func() time.Time
	tick func(time.Duration) (<-chan time.Time, func())
}

// realClock is the wall clock and a time.Ticker.
var realClock = &topClock{
	now: time.Now,
	tick: func(d time.Duration) (<-chan time.Time, func()) {
		t := time.NewTicker(d)
		return t.C, t.Stop
	},
}

// topSample is one `stats` answer and when it arrived.
type topSample struct {
	At    time.Time
	Stats client.Stats
	Raw   json.RawMessage
}

// run shows the view: one snapshot with --once, a screen when stdout is a
// terminal, plain lines otherwise.
func (c *TopCmd) run(ctx context.Context, srv target, stdin io.Reader, stdout io.Writer) error {
	clk := c.clock
	if clk == nil {
		clk = realClock
	}
	conn, err := srv.dial(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	first := true
	sample := func() (*topSample, error) {
		rctx, cancel := srv.request(ctx, "stats")
		defer cancel()
		raw, err := conn.StatsRaw(rctx)
		switch {
		case err != nil && first:
			return nil, srv.failed("stats", err) // with the TLS-only hint
		case err != nil:
			return nil, fmt.Errorf("lost the server at %s: %w", srv.endpoint, err)
		}
		first = false
		s := &topSample{At: clk.now(), Raw: bytes.Clone(raw)}
		if err := json.Unmarshal(raw, &s.Stats); err != nil {
			return nil, fmt.Errorf("decode stats: %w", err)
		}
		return s, nil
	}
	if c.Once {
		s, err := sample()
		if err != nil {
			return err
		}
		var out bytes.Buffer
		if c.JSON {
			b, err := json.Marshal(struct {
				Time  string          `json:"time"`
				Stats json.RawMessage `json:"stats"`
			}{s.At.Format(time.RFC3339Nano), s.Raw})
			if err != nil {
				return fmt.Errorf("encode sample: %w", err)
			}
			out.Write(b)
			out.WriteByte('\n')
		} else {
			for _, l := range renderScreen(summarize(nil, s), srv.endpoint, "", c.Keys, 0, 0) {
				out.WriteString(l)
				out.WriteByte('\n')
			}
		}
		if _, err := stdout.Write(out.Bytes()); err != nil {
			return fmt.Errorf("write output: %w", err)
		}
		return nil
	}
	if f, ok := stdout.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		in, _ := stdin.(*os.File)
		return c.screenLoop(ctx, clk, sample, srv.endpoint, in, f)
	}
	return c.lineLoop(ctx, clk, sample, stdout)
}

// lineLoop prints one summary line (and the top keys, indented) per
// interval, for a stdout that is not a terminal.
func (c *TopCmd) lineLoop(ctx context.Context, clk *topClock, sample func() (*topSample, error), stdout io.Writer) error {
	tick, stop := clk.tick(c.Interval.Duration())
	defer stop()
	var prev *topSample
	for n := 1; ; n++ {
		cur, err := sample()
		if err != nil {
			return err
		}
		var out bytes.Buffer
		for _, l := range renderLines(summarize(prev, cur), c.Keys) {
			out.WriteString(l)
			out.WriteByte('\n')
		}
		if _, err := stdout.Write(out.Bytes()); err != nil {
			return fmt.Errorf("write output: %w", err)
		}
		if n == c.Count {
			return nil
		}
		prev = cur
		select {
		case <-ctx.Done():
			return nil
		case <-tick:
		}
	}
}

// Escape sequences of the screen mode (VT100/xterm; every terminal
// emulator in use understands them).
const (
	escEnterScreen = "\x1b[?1049h\x1b[?25l" // alternate screen, cursor hidden
	escLeaveScreen = "\x1b[?25h\x1b[?1049l" // cursor shown, normal screen back
	escHome        = "\x1b[H"               // cursor to the top left
	escEOL         = "\x1b[K"               // clear to the end of the line
	escEOS         = "\x1b[J"               // clear to the end of the screen
)

// screenLoop redraws a screen fitted to the terminal every interval until
// q or Ctrl-C is typed, ctx ends (SIGINT, SIGTERM) or a sample fails.
// When stdin is a terminal it is put in raw mode to read single keys; the
// terminal is restored on every way out, a panic included. The goroutine
// reading keys stays blocked in its read when the loop returns: dflockctl
// exits right after.
func (c *TopCmd) screenLoop(ctx context.Context, clk *topClock, sample func() (*topSample, error), addr string, in, out *os.File) (err error) {
	keys := make(chan byte, 1)
	if in != nil && term.IsTerminal(int(in.Fd())) {
		old, err := term.MakeRaw(int(in.Fd()))
		if err != nil {
			return fmt.Errorf("terminal raw mode: %w", err)
		}
		defer func() { _ = term.Restore(int(in.Fd()), old) }()
		go readKeys(in, keys)
	}
	if _, err := io.WriteString(out, escEnterScreen); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	defer func() { _, _ = io.WriteString(out, escLeaveScreen) }()

	resized := make(chan os.Signal, 1)
	if len(resizeSignals) > 0 {
		signal.Notify(resized, resizeSignals...)
		defer signal.Stop(resized)
	}
	note := fmt.Sprintf("   every %s   q quits", c.Interval)
	draw := func(v topView) error {
		w, h, err := term.GetSize(int(out.Fd()))
		if err != nil {
			w, h = 80, 24
		}
		var b strings.Builder
		b.WriteString(escHome)
		for i, l := range renderScreen(v, addr, note, 0, w, h) {
			if i > 0 {
				b.WriteString("\r\n") // raw mode: no newline translation
			}
			b.WriteString(l)
			b.WriteString(escEOL)
		}
		b.WriteString(escEOS)
		if _, err := io.WriteString(out, b.String()); err != nil {
			return fmt.Errorf("write output: %w", err)
		}
		return nil
	}
	tick, stop := clk.tick(c.Interval.Duration())
	defer stop()
	var prev *topSample
	for n := 1; ; n++ {
		cur, err := sample()
		if err != nil {
			return err
		}
		v := summarize(prev, cur)
		if err := draw(v); err != nil {
			return err
		}
		if n == c.Count {
			return nil
		}
		prev = cur
		for waiting := true; waiting; {
			select {
			case <-ctx.Done():
				return nil
			case <-tick:
				waiting = false
			case <-resized: // the same view at the new size
				if err := draw(v); err != nil {
					return err
				}
			case k, ok := <-keys:
				if !ok || k == 'q' || k == 'Q' || k == 0x03 || k == 0x04 { // q, Ctrl-C, Ctrl-D, end of input
					return nil
				}
				waiting = false // any other key: update now
			}
		}
	}
}

// readKeys sends each byte read from in to keys, and closes keys when in
// ends.
func readKeys(in io.Reader, keys chan<- byte) {
	defer close(keys)
	var b [1]byte
	for {
		if n, err := in.Read(b[:]); err != nil {
			return
		} else if n == 1 {
			keys <- b[0]
		}
	}
}

// topView is what one update shows, computed from two samples by
// summarize.
type topView struct {
	At          time.Time
	Conns       int
	ByTransport []transportCount // sorted by name; nil from servers without the counts
	Requests    uint64           // 0 = the server does not count them
	OpsPerSec   float64
	HasRate     bool // OpsPerSec is known (two samples of a counting server)
	Held        int  // locks held plus semaphore slots held, of the listed keys
	Waiting     int  // waiters of the listed keys
	// Locks and Semaphores count the listed keys with holders or
	// waiters; LocksTotal and SemaphoresTotal all of them.
	Locks, LocksTotal           int
	Semaphores, SemaphoresTotal int
	Truncated                   bool // the server cut a list
	SlowConsumers               uint64
	Queues                      []keyRow // keys with waiters, longest queue first
	Holders                     []keyRow // held keys, held longest first
}

// transportCount is the number of open connections of one transport.
type transportCount struct {
	Name  string
	Conns int
}

// keyRow is one key of a table.
type keyRow struct {
	Key     string
	Limit   int // 1 = lock
	Holders int
	Waiters int
	HeldS   float64 // the longest-standing holder's
	LeaseS  float64 // locks: the holder's lease left; semaphores: 0
	Owner   uint64  // locks: the holder's connection id
}

// summarize computes the view of cur, with prev the sample before it (nil
// for the first).
func summarize(prev, cur *topSample) topView {
	st := &cur.Stats
	v := topView{
		At:            cur.At,
		Conns:         st.Connections,
		Requests:      st.Requests,
		Locks:         len(st.Locks),
		Semaphores:    len(st.Semaphores),
		SlowConsumers: st.SlowConsumers,
		Truncated:     st.Truncated,
	}
	v.LocksTotal, v.SemaphoresTotal = v.Locks, v.Semaphores
	if st.Totals != nil {
		v.LocksTotal, v.SemaphoresTotal = st.Totals.Locks, st.Totals.Semaphores
	}
	for name, n := range st.ConnectionsByTransport {
		v.ByTransport = append(v.ByTransport, transportCount{Name: name, Conns: n})
	}
	slices.SortFunc(v.ByTransport, func(a, b transportCount) int { return cmp.Compare(a.Name, b.Name) })
	if prev != nil {
		v.OpsPerSec, v.HasRate = opsPerSec(prev, cur)
	}
	for _, l := range st.Locks {
		r := keyRow{Key: l.Key, Limit: 1, Waiters: l.Waiters, Owner: l.OwnerConnID}
		if l.OwnerConnID != 0 {
			r.Holders, r.HeldS, r.LeaseS = 1, l.HeldS, l.LeaseExpiresInS
		}
		v.add(r)
	}
	for _, s := range st.Semaphores {
		v.add(keyRow{Key: s.Key, Limit: s.Limit, Holders: s.Holders, Waiters: s.Waiters, HeldS: s.HeldS})
	}
	slices.SortFunc(v.Queues, func(a, b keyRow) int {
		if c := cmp.Compare(b.Waiters, a.Waiters); c != 0 {
			return c
		}
		if c := cmp.Compare(b.HeldS, a.HeldS); c != 0 {
			return c
		}
		return cmp.Compare(a.Key, b.Key)
	})
	slices.SortFunc(v.Holders, func(a, b keyRow) int {
		if c := cmp.Compare(b.HeldS, a.HeldS); c != 0 {
			return c
		}
		return cmp.Compare(a.Key, b.Key)
	})
	return v
}

// add counts r and files it under the tables it belongs to.
func (v *topView) add(r keyRow) {
	v.Held += r.Holders
	v.Waiting += r.Waiters
	if r.Waiters > 0 {
		v.Queues = append(v.Queues, r)
	}
	if r.Holders > 0 {
		v.Holders = append(v.Holders, r)
	}
}

// opsPerSec is the request rate between two samples, not counting the
// stats requests that took the samples: each sample counts its own
// request, so one of the difference is ours. ok is false when the rate is
// unknown: a server that does not count requests, a counter that went
// back (the server restarted) or no time between the samples.
func opsPerSec(prev, cur *topSample) (rate float64, ok bool) {
	a, b := prev.Stats.Requests, cur.Stats.Requests
	dt := cur.At.Sub(prev.At).Seconds()
	if a == 0 || b < a || dt <= 0 {
		return 0, false
	}
	return float64(max(b-a, 1)-1) / dt, true
}

// topFixed is the number of lines of a screen that are not table rows:
// three header lines, and for each table a blank line, a title and a
// column header.
const topFixed = 3 + 2*3

// renderScreen draws v as the lines of a screen. With a height, the
// tables share the rows left under the header (the queues at most half
// when both have more keys than fit) and keys caps nothing; without one
// each table lists at most keys rows. With a width every line is cut to
// it.
func renderScreen(v topView, addr, note string, keys, width, height int) []string {
	nq, nh := min(len(v.Queues), keys), min(len(v.Holders), keys)
	if height > 0 {
		nq, nh = fitRows(len(v.Queues), len(v.Holders), height-topFixed)
	}
	lines := []string{
		fmt.Sprintf("dflockd %s   %s%s", clean(addr), v.At.Format("15:04:05"), note),
		fmt.Sprintf("conns %d%s   ops/s %s   requests %s   slow consumers %d",
			v.Conns, transports(v.ByTransport, " (", ", ", " ", ")"), rate(v), requests(v), v.SlowConsumers),
		fmt.Sprintf("held %d   waiting %d   locks %s   semaphores %s%s",
			v.Held, v.Waiting, nOfM(v.Locks, v.LocksTotal), nOfM(v.Semaphores, v.SemaphoresTotal), partial(v)),
	}
	lines = append(lines, "", fmt.Sprintf("LONGEST QUEUES (%s)", nOfM(nq, len(v.Queues))))
	lines = append(lines, table("  WAITERS\tHOLDERS\tLIMIT\tHELD\tKEY", v.Queues, nq, func(r keyRow) string {
		return fmt.Sprintf("  %d\t%d\t%d\t%s\t%s", r.Waiters, r.Holders, r.Limit, seconds(r.HeldS), clean(r.Key))
	})...)
	lines = append(lines, "", fmt.Sprintf("OLDEST HOLDERS (%s)", nOfM(nh, len(v.Holders))))
	lines = append(lines, table("  HELD\tLEASE LEFT\tOWNER\tHOLDERS\tWAITERS\tKEY", v.Holders, nh, func(r keyRow) string {
		lease, owner := "-", "-"
		if r.Limit == 1 {
			lease, owner = seconds(r.LeaseS), strconv.FormatUint(r.Owner, 10)
		}
		return fmt.Sprintf("  %s\t%s\t%s\t%d/%d\t%d\t%s", seconds(r.HeldS), lease, owner, r.Holders, r.Limit, r.Waiters, clean(r.Key))
	})...)
	if height > 0 && len(lines) > height {
		lines = lines[:height]
	}
	if width > 0 {
		for i, l := range lines {
			lines[i] = cut(l, width)
		}
	}
	return lines
}

// fitRows shares room table rows between a table of q keys and one of h:
// each gets what it needs when both fit; otherwise the queues get at most
// half, and the holders the rest.
func fitRows(q, h, room int) (nq, nh int) {
	room = max(room, 0)
	if q+h <= room {
		return q, h
	}
	nq = min(q, max(room/2, room-h))
	return nq, min(h, room-nq)
}

// table aligns a header and a row for each of the first n entries of
// rows; "(none)" when rows is empty, nothing when n is 0 (no room).
func table(header string, rows []keyRow, n int, row func(keyRow) string) []string {
	switch {
	case len(rows) == 0:
		return []string{"  (none)"}
	case n == 0:
		return nil
	}
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows[:n] {
		fmt.Fprintln(tw, row(r))
	}
	tw.Flush()
	return strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
}

// renderLines draws v as plain lines for a log: one summary line of
// name=value fields, then the top keys of each table, indented.
func renderLines(v topView, keys int) []string {
	head := fmt.Sprintf("%s conns=%d%s ops/s=%s requests=%s held=%d waiting=%d locks=%s semaphores=%s",
		v.At.Format(time.RFC3339), v.Conns, transports(v.ByTransport, " ", " ", "=", ""), rate(v), requests(v),
		v.Held, v.Waiting, slashOf(v.Locks, v.LocksTotal), slashOf(v.Semaphores, v.SemaphoresTotal))
	if v.Truncated {
		head += " truncated"
	}
	lines := []string{head}
	for _, r := range v.Queues[:min(keys, len(v.Queues))] {
		lines = append(lines, fmt.Sprintf("  queue waiters=%d holders=%d/%d held=%s key=%s", r.Waiters, r.Holders, r.Limit, seconds(r.HeldS), clean(r.Key)))
	}
	for _, r := range v.Holders[:min(keys, len(v.Holders))] {
		l := fmt.Sprintf("  holder held=%s holders=%d/%d waiters=%d", seconds(r.HeldS), r.Holders, r.Limit, r.Waiters)
		if r.Limit == 1 {
			l += fmt.Sprintf(" lease=%s owner=%d", seconds(r.LeaseS), r.Owner)
		}
		lines = append(lines, l+" key="+clean(r.Key))
	}
	return lines
}

// transports formats per-transport counts as open name sep value sep ...
// close, or "" when there are none.
func transports(ts []transportCount, open, sep, eq, close string) string {
	if len(ts) == 0 {
		return ""
	}
	parts := make([]string, len(ts))
	for i, t := range ts {
		parts[i] = t.Name + eq + strconv.Itoa(t.Conns)
	}
	return open + strings.Join(parts, sep) + close
}

// rate formats the request rate, "-" when unknown.
func rate(v topView) string {
	if !v.HasRate {
		return "-"
	}
	return strconv.FormatFloat(v.OpsPerSec, 'f', 1, 64)
}

// requests formats the request counter, "-" when the server has none.
func requests(v topView) string {
	if v.Requests == 0 {
		return "-"
	}
	return strconv.FormatUint(v.Requests, 10)
}

// nOfM formats a listed count: "n", or "n of m" when the list was cut.
func nOfM(n, m int) string {
	if m > n {
		return fmt.Sprintf("%d of %d", n, m)
	}
	return strconv.Itoa(n)
}

// slashOf is nOfM for a name=value field: "n", or "n/m".
func slashOf(n, m int) string {
	if m > n {
		return fmt.Sprintf("%d/%d", n, m)
	}
	return strconv.Itoa(n)
}

// partial notes that held and waiting cover the listed keys only.
func partial(v topView) string {
	if !v.Truncated {
		return ""
	}
	return "   (stats truncated: counts cover the listed keys)"
}

// clean makes s safe to print on a terminal: control and other
// non-printable characters, and invalid UTF-8, become '?', so that a key
// cannot carry escape sequences to the screen.
func clean(s string) string {
	ok := true
	for _, r := range s {
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			ok = false
			break
		}
	}
	if ok {
		return s
	}
	return strings.Map(func(r rune) rune {
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			return '?'
		}
		return r
	}, s)
}

// cut shortens s to at most width characters, ending with '>' when cut.
func cut(s string, width int) string {
	if utf8.RuneCountInString(s) <= width {
		return s
	}
	if width <= 1 {
		return string([]rune(s)[:width])
	}
	return string([]rune(s)[:width-1]) + ">"
}
