// Package progress reports long work to people: phase lines such as
// "[pull] phase=build step=debootstrap environment=debian:12" everywhere, and
// a progress bar when stderr is a terminal.
package progress

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// Reporter receives the phases and progress of long work.
type Reporter interface {
	// Phase starts a named phase with key=value details.
	Phase(phase string, kv ...string)
	// Update reports progress inside the current phase: done of total units
	// (total 0: unknown) and a short note.
	Update(done, total int64, note string)
}

// Nop discards everything.
type Nop struct{}

func (Nop) Phase(string, ...string)     {}
func (Nop) Update(int64, int64, string) {}

// Lines writes one line per phase, for logs and pipes. Updates are dropped:
// a log wants milestones, not a stream of percentages.
type Lines struct {
	W      io.Writer
	Prefix string // "pull", "run", ...
	mu     sync.Mutex
}

// Phase implements Reporter.
func (l *Lines) Phase(phase string, kv ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintln(l.W, FormatLine(l.Prefix, append([]string{"phase", phase}, kv...)...))
}

// Update implements Reporter.
func (l *Lines) Update(int64, int64, string) {}

// FormatLine renders "[prefix] k=v k=v"; values with spaces, quotes or
// control characters are quoted, so that a value (an error message, a
// guest's text) never breaks the line or forges another.
func FormatLine(prefix string, kv ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[%s]", prefix)
	for i := 0; i+1 < len(kv); i += 2 {
		v := kv[i+1]
		if v == "" || strings.ContainsFunc(v, needsQuote) {
			v = strconv.Quote(v)
		}
		fmt.Fprintf(&b, " %s=%s", kv[i], v)
	}
	return b.String()
}

func needsQuote(r rune) bool {
	return r == '"' || r == utf8.RuneError || unicode.IsSpace(r) || !strconv.IsPrint(r)
}
