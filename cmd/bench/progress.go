package main

import (
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// progressDelay is how long a run goes before it gets a progress bar:
// short runs finish before a bar would help.
const progressDelay = 2 * time.Second

// progress draws a progress bar on stderr for long runs. With "auto" it
// is on only when stderr is a terminal, so logs and pipes stay clean.
// update is called from one goroutine at a time (the run's reporter).
type progress struct {
	on    bool
	w     io.Writer
	bar   *progressbar.ProgressBar
	total int64
	last  int64
	start time.Time
	now   func() time.Time // the clock; time.Now outside tests
}

func newProgress(mode string, w io.Writer) *progress {
	p := &progress{w: w, now: time.Now}
	switch mode {
	case "on":
		p.on = true
	case "auto":
		f, ok := w.(*os.File)
		p.on = ok && term.IsTerminal(int(f.Fd()))
	}
	return p
}

// update reports done of total operations of the current run; a new
// total (or a count going back) means a new run.
func (p *progress) update(done, total int64) {
	if !p.on {
		return
	}
	if total != p.total || done < p.last {
		p.finish()
		p.total, p.start = total, p.now()
	}
	p.last = done
	if p.bar == nil {
		if p.now().Sub(p.start) < progressDelay || done >= total {
			return
		}
		p.bar = progressbar.NewOptions64(total,
			progressbar.OptionSetWriter(p.w),
			progressbar.OptionSetDescription("bench"),
			progressbar.OptionShowCount(),
			progressbar.OptionShowIts(),
			progressbar.OptionSetItsString("ops"),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionClearOnFinish(),
		)
	}
	_ = p.bar.Set64(done)
	if done >= total {
		p.finish()
	}
}

// finish removes the bar, if one is drawn.
func (p *progress) finish() {
	if p.bar != nil {
		_ = p.bar.Finish()
		_ = p.bar.Clear()
		p.bar = nil
	}
}
