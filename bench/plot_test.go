package bench

import (
	"encoding/xml"
	"image"
	_ "image/png" // decode the PNG charts
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"gonum.org/v1/plot/vg"
)

// checkChart checks that path is a chart of ChartWidth × ChartHeight:
// a PNG that decodes to that many pixels (at gonum's 96 dpi), or an SVG
// whose width and height say so and that draws paths. It does not look
// at what is drawn.
func checkChart(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("chart not written: %v", err)
	}
	defer f.Close()
	switch filepath.Ext(path) {
	case ".png":
		cfg, format, err := image.DecodeConfig(f)
		if err != nil || format != "png" {
			t.Fatalf("%s: not a PNG: %v (%s)", path, err, format)
		}
		wantW, wantH := dots(ChartWidth), dots(ChartHeight)
		if abs(cfg.Width-wantW) > 1 || abs(cfg.Height-wantH) > 1 {
			t.Fatalf("%s: %d×%d pixels, want %d×%d", path, cfg.Width, cfg.Height, wantW, wantH)
		}
	case ".svg":
		w, h, paths := svgInfo(t, f)
		if math.Abs(w-ChartWidth.Points()) > 1 || math.Abs(h-ChartHeight.Points()) > 1 {
			t.Fatalf("%s: %.1f×%.1f pt, want %.1f×%.1f", path, w, h, ChartWidth.Points(), ChartHeight.Points())
		}
		if paths < 10 {
			t.Fatalf("%s: %d path elements: nothing drawn", path, paths)
		}
	default:
		t.Fatalf("%s: unexpected format", path)
	}
}

func dots(l vg.Length) int { return int(math.Ceil(l.Dots(96))) }

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// svgInfo parses an SVG document: its width and height in points and
// its number of path elements.
func svgInfo(t *testing.T, r io.Reader) (w, h float64, paths int) {
	t.Helper()
	dec := xml.NewDecoder(r)
	root := true
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("svg: %v", err)
		}
		se, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		if root {
			root = false
			if se.Name.Local != "svg" {
				t.Fatalf("root element %s, want svg", se.Name.Local)
			}
			for _, a := range se.Attr {
				switch a.Name.Local {
				case "width":
					w = points(t, a.Value)
				case "height":
					h = points(t, a.Value)
				}
			}
		}
		if se.Name.Local == "path" {
			paths++
		}
	}
	return w, h, paths
}

// points parses an SVG length ("453.54pt", "453.54", "604px").
func points(t *testing.T, s string) float64 {
	t.Helper()
	scale := 1.0
	switch {
	case strings.HasSuffix(s, "pt"):
		s = strings.TrimSuffix(s, "pt")
	case strings.HasSuffix(s, "px"):
		s, scale = strings.TrimSuffix(s, "px"), 72.0/96
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatalf("svg length %q: %v", s, err)
	}
	return v * scale
}

// syntheticResult is a run whose latencies grow along the percentiles.
func syntheticResult(workers int, opsPerS float64, base time.Duration) *Result {
	curve := make([]time.Duration, len(CurvePercentiles))
	for i := range curve {
		curve[i] = base * time.Duration(i+1)
	}
	return &Result{Mode: ModeLock, Transport: "tcp", Workers: workers, Throughput: opsPerS, Latency: Latency{Curve: curve}}
}

func TestChartsAreWritten(t *testing.T) {
	for _, ext := range []string{"svg", "png"} {
		t.Run(ext, func(t *testing.T) {
			dir := t.TempDir()
			var rows []MatrixRow
			for _, tr := range []string{"tcp", "unix"} {
				for i, w := range []int{1, 10, 50, 100} {
					d := syntheticResult(w, float64(10000*(i+1)), 50*time.Microsecond)
					e := syntheticResult(w, float64(11000*(i+1)), 45*time.Microsecond)
					rows = append(rows, MatrixRow{Transport: tr, Mode: ModeLock, Workers: w, Result: d,
						Baseline: &Comparison{Dflockd: d, Echo: e}})
				}
			}
			files, err := MatrixCharts(dir, ext, rows)
			if err != nil {
				t.Fatal(err)
			}
			want := []string{"latency-tcp-lock." + ext, "latency-unix-lock." + ext, "throughput-lock." + ext}
			if len(files) != len(want) {
				t.Fatalf("wrote %v, want %v", files, want)
			}
			for i, f := range files {
				if filepath.Base(f) != want[i] {
					t.Fatalf("wrote %v, want %v", files, want)
				}
				checkChart(t, f)
			}

			res := &FailoverResult{Mode: ModeLock, Workers: 8, Bucket: 100 * time.Millisecond,
				Kills: []KillEvent{{Node: "n1", At: 1500 * time.Millisecond}, {Node: "n2", At: 4 * time.Second}}}
			for i := range 60 {
				n := int64(50)
				if (i >= 15 && i < 26) || (i >= 40 && i < 51) {
					n = 0 // the gaps
				}
				res.Timeline = append(res.Timeline, n)
			}
			tl := filepath.Join(dir, "failover-lock."+ext)
			if err := PlotTimeline(tl, "timeline", res); err != nil {
				t.Fatal(err)
			}
			checkChart(t, tl)
		})
	}
}
