package bench

import (
	"bytes"
	"context"
	"errors"
	"math"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dflockd/dflockd/auth"
	"github.com/dflockd/dflockd/internal/leakcheck"
	"github.com/dflockd/dflockd/internal/testserver"
	"github.com/dflockd/dflockd/protocol"
	"github.com/dflockd/dflockd/server"
	"github.com/dflockd/dflockd/transport"
)

func TestMain(m *testing.M) { os.Exit(leakcheck.Main(m)) }

// local starts an in-process server for the test and stops it after.
func local(t testing.TB, name string, kind Kind) *Local {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := StartLocal(ctx, name, kind)
	if errors.Is(err, transport.ErrDisabled) {
		t.Skipf("%s: %v", name, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// ctxT bounds a test's run.
func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// signalRounds keeps a signal test's frames few (3 workers × (2 warm-up +
// 18 rounds) = 60), so that the tests over every transport stay quick.
const signalRounds = 18

func smallConfig(l *Local, mode Mode) Config {
	return Config{
		Mode: mode, Workers: 3, Rounds: 20, Warmup: 2,
		Timeout: 5 * time.Second, Lease: 10 * time.Second,
		Servers: []transport.Endpoint{l.Endpoint}, Transport: l.Client,
	}
}

// checkResult verifies the counts and that the latency figures are
// ordered and plausible.
func checkResult(t *testing.T, r *Result, wantOps int64) {
	t.Helper()
	if r.Ops != wantOps {
		t.Fatalf("Ops = %d; want %d", r.Ops, wantOps)
	}
	if r.Wall <= 0 || r.Throughput <= 0 {
		t.Fatalf("Wall = %v, Throughput = %v; want > 0", r.Wall, r.Throughput)
	}
	l := r.Latency
	if !(l.Min > 0 && l.Min <= l.P50 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.P999) {
		t.Fatalf("latencies out of order: %+v", l)
	}
	// Percentiles come from the histogram, within 0.1% of a recorded value.
	if float64(l.P999) > float64(l.Max)*1.001 || l.Mean < l.Min || l.Mean > l.Max {
		t.Fatalf("latencies out of range: %+v", l)
	}
}

func TestRunEveryModeOverEveryTransport(t *testing.T) {
	for _, name := range DefaultTransports {
		t.Run(name, func(t *testing.T) {
			srv := local(t, name, KindDflockd)
			for _, mode := range Modes {
				t.Run(string(mode), func(t *testing.T) {
					cfg := smallConfig(srv, mode)
					cfg.Listeners = 2
					if mode == ModeSignal {
						cfg.Rounds = signalRounds
					}
					r, err := Run(ctxT(t), cfg)
					if err != nil {
						t.Fatal(err)
					}
					want := int64(cfg.Workers * cfg.Rounds)
					if mode == ModeSignal {
						want *= 2 // every publish reaches both listeners
						if r.Published != int64(cfg.Workers*cfg.Rounds) || r.Expected != want {
							t.Fatalf("Published = %d, Expected = %d; want %d, %d", r.Published, r.Expected, cfg.Workers*cfg.Rounds, want)
						}
					}
					checkResult(t, r, want)
					if r.Transport != name || r.Mode != mode {
						t.Fatalf("Result names %s/%s; want %s/%s", r.Transport, r.Mode, name, mode)
					}
				})
			}
		})
	}
}

func TestPipelineAndConnections(t *testing.T) {
	srv := local(t, "tcp", KindDflockd)
	for _, mode := range []Mode{ModeLock, ModeSemaphore, ModeTwoPhase, ModeSignal} {
		t.Run(string(mode), func(t *testing.T) {
			cfg := smallConfig(srv, mode)
			cfg.Pipeline, cfg.Connections, cfg.Rounds = 8, 3, 50
			if mode == ModeSignal {
				cfg.Rounds = signalRounds
			}
			r, err := Run(ctxT(t), cfg)
			if err != nil {
				t.Fatal(err)
			}
			checkResult(t, r, int64(cfg.Workers*cfg.Rounds))
			if r.Pipeline != 8 || r.Connections != 3 {
				t.Fatalf("Result pipeline/connections = %d/%d", r.Pipeline, r.Connections)
			}
		})
	}
}

func TestSharedKeySemaphore(t *testing.T) {
	srv := local(t, "tcp", KindDflockd)
	cfg := smallConfig(srv, ModeSemaphore)
	cfg.Workers, cfg.SharedKey, cfg.Limit = 6, true, 2
	r, err := Run(ctxT(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	checkResult(t, r, int64(cfg.Workers*cfg.Rounds))
}

// TestHandoffChecksOrder runs the hand-off check against the echo server,
// which hands every worker the same token at once: the check must see two
// holders or a fence that did not increase.
func TestHandoffChecksOrder(t *testing.T) {
	echo := local(t, "tcp", KindEcho)
	cfg := smallConfig(echo, ModeHandoff)
	cfg.Warmup = 0
	_, err := Run(ctxT(t), cfg)
	var we *WorkerError
	if !errors.As(err, &we) || !errors.Is(err, errOrder) {
		t.Fatalf("Run against echo in handoff mode = %v; want a WorkerError wrapping errOrder", err)
	}
	if !strings.HasPrefix(err.Error(), "worker ") || !strings.Contains(err.Error(), " error: ") {
		t.Fatalf("error %q does not read \"worker N error: ...\"", err)
	}
}

// TestTimeoutAbortsRun holds the shared key elsewhere so that every
// try-lock answers "timeout", which must abort the run as in 1.x.
func TestTimeoutAbortsRun(t *testing.T) {
	srv := local(t, "tcp", KindDflockd)
	c, err := dial(ctxT(t), srv.Endpoint, srv.Client, "")
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	c.request(protocol.CmdLock, "held", "0 60")
	if err := c.flush(); err != nil {
		t.Fatal(err)
	}
	if line, err := c.line(); err != nil || !bytes.HasPrefix(line, []byte("ok ")) {
		t.Fatalf("l held = %q, %v", line, err)
	}
	cfg := smallConfig(srv, ModeLock)
	cfg.Key, cfg.SharedKey, cfg.Timeout = "held", true, 0
	_, err = Run(ctxT(t), cfg)
	if !errors.Is(err, errUnexpected) || !strings.Contains(err.Error(), `"timeout"`) {
		t.Fatalf("Run = %v; want an unexpected-answer error naming timeout", err)
	}
}

func TestDialErrorAborts(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	cfg := Config{Workers: 2, Rounds: 1, Servers: []transport.Endpoint{{Transport: "tcp", Addr: addr}}}
	if _, err := Run(ctxT(t), cfg); err == nil {
		t.Fatal("Run against a closed port succeeded")
	}
}

func TestCancelStopsRun(t *testing.T) {
	srv := local(t, "tcp", KindDflockd)
	cfg := smallConfig(srv, ModeLock)
	cfg.Rounds = 1 << 30 // would run for hours
	ctx, cancel := context.WithCancel(context.Background())
	cfg.Progress = func(done, total int64) {
		if done > 0 {
			cancel()
		}
	}
	_, err := Run(ctx, cfg)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run after cancel = %v; want context.Canceled", err)
	}
}

func TestValidate(t *testing.T) {
	ep := []transport.Endpoint{{Transport: "tcp", Addr: "127.0.0.1:1"}}
	ok := Config{Workers: 1, Rounds: 1, Servers: ep}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"workers", func(c *Config) { c.Workers = 0 }, "--workers"},
		{"rounds", func(c *Config) { c.Rounds = -1 }, "--rounds"},
		{"warmup", func(c *Config) { c.Warmup = -1 }, "--warmup"},
		{"timeout", func(c *Config) { c.Timeout = -1 }, "--timeout"},
		{"lease", func(c *Config) { c.Lease = -1 }, "--lease"},
		{"connections", func(c *Config) { c.Connections = -1 }, "--connections"},
		{"pipeline", func(c *Config) { c.Pipeline = -1 }, "--pipeline"},
		{"mode", func(c *Config) { c.Mode = "nope" }, "unknown mode"},
		{"servers", func(c *Config) { c.Servers = nil }, "--servers"},
		{"empty server", func(c *Config) { c.Servers = []transport.Endpoint{{Transport: "tcp"}} }, "empty --servers"},
		{"pipeline shared", func(c *Config) { c.Pipeline, c.SharedKey = 2, true }, "per-worker keys"},
		{"pipeline handoff", func(c *Config) { c.Pipeline, c.Mode = 2, ModeHandoff }, "per-worker keys"},
		{"signal window", func(c *Config) { c.SignalWindow = -1 }, "--signal-window"},
		{"payload short", func(c *Config) { c.PayloadSize = timestampDigits - 1 }, "--payload-size"},
		{"payload long", func(c *Config) { c.PayloadSize = protocol.MaxLongLine }, "--payload-size"},
	} {
		c := ok
		tc.edit(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Validate = %v; want an error mentioning %q", tc.name, err, tc.want)
		}
	}
}

func TestCompareWithEcho(t *testing.T) {
	srv := local(t, "unix", KindDflockd)
	echo := local(t, "unix", KindEcho)
	cfg := smallConfig(srv, ModeLock)
	ecfg := smallConfig(echo, ModeLock)
	cmp, err := Compare(ctxT(t), cfg, ecfg, 2)
	if err != nil {
		t.Fatal(err)
	}
	want := int64(2 * cfg.Workers * cfg.Rounds)
	if cmp.Dflockd.Ops != want || cmp.Echo.Ops != want {
		t.Fatalf("ops dflockd %d, echo %d; want %d each", cmp.Dflockd.Ops, cmp.Echo.Ops, want)
	}
	got := cmp.Dflockd.Throughput / cmp.Echo.Throughput
	if cmp.Efficiency <= 0 || math.Abs(cmp.Efficiency-got) > 1e-9 {
		t.Fatalf("Efficiency = %v; want %v", cmp.Efficiency, got)
	}
	if _, err := Compare(ctxT(t), smallConfig(srv, ModeHandoff), ecfg, 1); !errors.Is(err, errNoBaseline) {
		t.Fatalf("Compare in handoff mode = %v; want errNoBaseline", err)
	}
}

func TestMatrixReport(t *testing.T) {
	var log bytes.Buffer
	base := Config{Rounds: 5, Warmup: 1, Timeout: 5 * time.Second, Lease: 10 * time.Second}
	rows, err := RunMatrix(ctxT(t), MatrixConfig{
		Base: base, Modes: []Mode{ModeLock, ModeHandoff}, Transports: []string{"tcp", "quic"},
		Workers: []int{1, 3}, Baseline: true, Repeats: 1, Log: &log,
	})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := WriteMatrix(&out, rows); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	for _, want := range []string{"### tcp — lock", "### tcp — handoff", "| Efficiency |", "| 3 | 5 | 15 |"} {
		if !strings.Contains(text, want) {
			t.Errorf("matrix report lacks %q:\n%s", want, text)
		}
	}
	var withBase, without int
	for _, r := range rows {
		if r.Baseline != nil {
			withBase++
		} else {
			without++
		}
	}
	perTransport := len(rows) / 4
	if len(rows)%4 != 0 || withBase != 2*perTransport || without != 2*perTransport {
		t.Fatalf("rows: %d with baseline, %d without (of %d)", withBase, without, len(rows))
	}
	if !strings.Contains(log.String(), "efficiency") {
		t.Fatalf("log lacks per-cell lines:\n%s", log.String())
	}
}

func TestRecorderMatchesExactFigures(t *testing.T) {
	var all []time.Duration
	a, b := newRecorder(), newRecorder()
	for i := range 5000 {
		d := time.Duration(1000+i*i%977) * time.Microsecond
		all = append(all, d)
		if i%3 == 0 {
			a.record(d)
		} else {
			b.record(d)
		}
	}
	a.merge(b)
	s := a.summary()
	slices.Sort(all)
	var sum float64
	for _, d := range all {
		sum += float64(d)
	}
	mean := sum / float64(len(all))
	var sq float64
	for _, d := range all {
		sq += (float64(d) - mean) * (float64(d) - mean)
	}
	sd := math.Sqrt(sq / float64(len(all)-1))
	near := func(got, want float64, tol float64) bool { return math.Abs(got-want) <= tol*want }
	if !near(float64(s.Mean), mean, 1e-6) || !near(float64(s.Stdev), sd, 1e-6) {
		t.Fatalf("mean %v stdev %v; want %v %v", s.Mean, s.Stdev, time.Duration(mean), time.Duration(sd))
	}
	if s.Min != all[0] || s.Max != all[len(all)-1] {
		t.Fatalf("min/max %v/%v; want %v/%v", s.Min, s.Max, all[0], all[len(all)-1])
	}
	p99 := all[int(math.Ceil(0.99*float64(len(all))))-1]
	if !near(float64(s.P99), float64(p99), 0.002) {
		t.Fatalf("p99 %v; want %v within 0.2%%", s.P99, p99)
	}
}

func TestWriteTextFollowsSection10(t *testing.T) {
	r := &Result{Mode: ModeLock, Transport: "tcp", Workers: 2, Rounds: 3, Connections: 1, Pipeline: 1,
		KeyDesc: "bench_<id>", Ops: 6, Wall: 1500 * time.Millisecond, Throughput: 4,
		Latency: Latency{Mean: 47 * time.Microsecond, Min: time.Microsecond, Max: time.Millisecond,
			P50: 40 * time.Microsecond, P99: 900 * time.Microsecond, Stdev: 5 * time.Microsecond}}
	var b bytes.Buffer
	if err := WriteText(&b, r); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"bench: 2 workers x 3 rounds (key=\"bench_<id>\", conns/worker=1, unique per-worker keys)\n\n",
		"  total ops : 6\n", "  wall time : 1.500s\n", "  throughput: 4.0 ops/s\n\n",
		"  mean      : 0.047 ms\n", "  p99       : 0.900 ms\n", "  stdev     : 0.005 ms\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, b.String())
		}
	}
	b.Reset()
	if err := WriteTable(&b, []*Result{r}); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(b.String(), "| Workers | Rounds | Ops | Throughput | Mean | p50 | p99 |") ||
		!strings.Contains(b.String(), "| 2 | 3 | 6 | 4 | 0.047 | 0.040 | 0.900 |") {
		t.Fatalf("table:\n%s", b.String())
	}
}

// TestSignalFlowControl publishes far more frames than the server's push
// queue holds, pipelined: the publishers' window must keep every listener
// connected and every frame delivered.
func TestSignalFlowControl(t *testing.T) {
	srv := local(t, "tcp", KindDflockd)
	cfg := smallConfig(srv, ModeSignal)
	cfg.Workers, cfg.Rounds, cfg.Pipeline, cfg.Listeners = 4, 500, 8, 3
	r, err := Run(ctxT(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	checkResult(t, r, int64(cfg.Workers*cfg.Rounds*cfg.Listeners))
}

func TestAuthToken(t *testing.T) {
	ts := testserver.Start(t, "tls", testserver.Config{Server: server.Options{Auth: auth.Token("s3cret")}})
	cfg := Config{Workers: 2, Rounds: 5, Timeout: 5 * time.Second,
		Servers: []transport.Endpoint{ts.Endpoint}, Transport: transport.Options{TLS: ts.TLS}}
	if _, err := Run(ctxT(t), cfg); err == nil {
		t.Fatal("Run without the token succeeded")
	}
	cfg.AuthToken = "wrong"
	if _, err := Run(ctxT(t), cfg); err == nil || !strings.Contains(err.Error(), "error_auth") {
		t.Fatalf("Run with a wrong token = %v; want error_auth", err)
	}
	cfg.AuthToken = "s3cret"
	r, err := Run(ctxT(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	checkResult(t, r, 10)
}

// TestSignalPayloadAndWindow: publishes carry payloads of --payload-size
// bytes (each listener checks the size and the publish time it starts
// with), and a small explicit window still delivers everything.
func TestSignalPayloadAndWindow(t *testing.T) {
	srv := local(t, "tcp", KindDflockd)
	cfg := smallConfig(srv, ModeSignal)
	cfg.Workers, cfg.Rounds, cfg.Pipeline, cfg.Listeners = 2, 200, 8, 2
	cfg.PayloadSize, cfg.SignalWindow = 1000, 4
	r, err := Run(ctxT(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	checkResult(t, r, int64(cfg.Workers*cfg.Rounds*cfg.Listeners))
}

// The default window fills at most half of the server's default push
// queue, whatever the payload, and never drops below one publish.
func TestSignalWindowDefault(t *testing.T) {
	for _, size := range []int{0, 128, 4096, protocol.MaxPayload(len("bench"))} {
		cfg := Config{Key: "bench", PayloadSize: size}
		w := signalWindow(cfg)
		frame := int64(len("sig bench \n") + payloadLen(cfg) + server.PushFrameOverhead)
		if w < 1 || w*frame > DefaultSignalQueueBytes/2 && w > 1 {
			t.Errorf("payload %d: window %d × %d-byte frames; want >= 1 and within half of %d", size, w, frame, DefaultSignalQueueBytes)
		}
	}
	if w := signalWindow(Config{Key: "bench", SignalWindow: 7}); w != 7 {
		t.Errorf("explicit window: %d; want 7", w)
	}
	if w := signalWindow(Config{Key: "bench", PayloadSize: 128}); w < 1000 {
		t.Errorf("window for 128-byte payloads = %d; want at least 1000 (enough to measure sustained throughput)", w)
	}
}

func TestParsePayload(t *testing.T) {
	for _, tc := range []struct {
		in   string
		size int
		want int64
		ok   bool
	}{
		{"1764670000123456789", 19, 1764670000123456789, true},
		{"1764670000123456789......", 25, 1764670000123456789, true},
		{"1764670000123456789.....", 25, 0, false}, // short
		{"17646700001234567x9......", 25, 0, false},
		{"..........", 10, 0, false},
		{"99999999999999999999", 20, 0, false}, // 20 digits: overflow
	} {
		got, ok := parsePayload([]byte(tc.in), tc.size)
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("parsePayload(%q, %d) = %d, %v; want %d, %v", tc.in, tc.size, got, ok, tc.want, tc.ok)
		}
	}
}
