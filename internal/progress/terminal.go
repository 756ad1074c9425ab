package progress

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
)

// Terminal draws a progress bar (or a spinner when the total is unknown)
// under the phase lines, for people watching a terminal.
type Terminal struct {
	w      io.Writer
	prefix string

	mu    sync.Mutex
	bar   *progressbar.ProgressBar
	total int64
}

// NewTerminal returns a Reporter for the terminal w.
func NewTerminal(w io.Writer, prefix string) *Terminal {
	return &Terminal{w: w, prefix: prefix}
}

// Phase implements Reporter: it ends any bar and prints the phase line.
func (t *Terminal) Phase(phase string, kv ...string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.endBarLocked()
	fmt.Fprintln(t.w, FormatLine(t.prefix, append([]string{"phase", phase}, kv...)...))
}

// Update implements Reporter.
func (t *Terminal) Update(done, total int64, note string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.bar == nil || total != t.total {
		t.endBarLocked()
		max := total
		if max <= 0 {
			max = -1 // spinner
		}
		opts := []progressbar.Option{
			progressbar.OptionSetWriter(t.w),
			progressbar.OptionSetWidth(30),
			progressbar.OptionThrottle(100 * time.Millisecond),
			progressbar.OptionShowElapsedTimeOnFinish(),
			progressbar.OptionSetElapsedTime(true),
			progressbar.OptionClearOnFinish(),
		}
		if total > 1<<20 {
			opts = append(opts, progressbar.OptionShowBytes(true))
		}
		if max < 0 {
			opts = append(opts, progressbar.OptionSpinnerType(14))
		}
		t.bar = progressbar.NewOptions64(max, opts...)
		t.total = total
	}
	if len(note) > 48 {
		note = note[:47] + "…"
	}
	t.bar.Describe(note)
	t.bar.Set64(done)
}

func (t *Terminal) endBarLocked() {
	if t.bar != nil {
		t.bar.Finish()
		t.bar.Clear()
		t.bar = nil
	}
}
