package progress

import (
	"bytes"
	"strings"
	"sync"
	"testing"
)

func TestFormatLine(t *testing.T) {
	for _, tc := range []struct {
		prefix string
		kv     []string
		want   string
	}{
		{"run", nil, "[run]"},
		{"pull", []string{"phase", "build", "environment", "debian:12"}, "[pull] phase=build environment=debian:12"},
		{"run", []string{"warning", "stdout truncated", "kept_bytes", "1048576"}, `[run] warning="stdout truncated" kept_bytes=1048576`},
		{"run", []string{"empty", ""}, `[run] empty=""`},
		{"run", []string{"quote", `say "hi"`}, `[run] quote="say \"hi\""`},
		{"run", []string{"lone", `a"b`}, `[run] lone="a\"b"`},
		{"run", []string{"tab", "a\tb"}, `[run] tab="a\tb"`},
		{"run", []string{"path", "/a/b=c:d"}, "[run] path=/a/b=c:d"},
		{"run", []string{"odd", "pair", "dangling"}, "[run] odd=pair"},
		// A value must never break the one-line form.
		{"run", []string{"error", "boom\nhint: fake line"}, `[run] error="boom\nhint: fake line"`},
		{"run", []string{"nl", "a\nb"}, `[run] nl="a\nb"`},
		{"run", []string{"cr", "a\rb"}, `[run] cr="a\rb"`},
		{"run", []string{"esc", "\x1b[31mred"}, `[run] esc="\x1b[31mred"`},
		{"run", []string{"nbsp", "a\u00a0b"}, `[run] nbsp="a\u00a0b"`},
		{"run", []string{"utf8", "résumé"}, "[run] utf8=résumé"},
		{"run", []string{"invalid", "bad\xffbyte"}, `[run] invalid="bad\xffbyte"`},
	} {
		got := FormatLine(tc.prefix, tc.kv...)
		if got != tc.want {
			t.Errorf("FormatLine(%q, %q) = %s, want %s", tc.prefix, tc.kv, got, tc.want)
		}
		if strings.ContainsAny(got, "\n\r") {
			t.Errorf("FormatLine(%q, %q) spans lines: %q", tc.prefix, tc.kv, got)
		}
	}
}

func TestLines(t *testing.T) {
	var buf bytes.Buffer
	l := &Lines{W: &buf, Prefix: "pull"}
	var r Reporter = l
	r.Phase("resolve", "environment", "debian:12")
	r.Update(10, 100, "downloading") // dropped
	r.Phase("build", "step", "debootstrap", "note", "takes a minute")
	r.Phase("ready")
	want := `[pull] phase=resolve environment=debian:12
[pull] phase=build step=debootstrap note="takes a minute"
[pull] phase=ready
`
	if buf.String() != want {
		t.Errorf("Lines wrote\n%s\nwant\n%s", buf.String(), want)
	}
}

func TestLinesConcurrent(t *testing.T) {
	var buf bytes.Buffer
	l := &Lines{W: &buf, Prefix: "run"}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				l.Phase("step", "k", "some value")
			}
		})
	}
	wg.Wait()
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 400 {
		t.Fatalf("%d lines, want 400", len(lines))
	}
	for _, line := range lines {
		if line != `[run] phase=step k="some value"` {
			t.Fatalf("interleaved line %q", line)
		}
	}
}

func TestNop(t *testing.T) {
	var r Reporter = Nop{}
	r.Phase("x", "k", "v")
	r.Update(1, 2, "n")
}
