package patch

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/pyro-sandbox/pyro/internal/textdiff"
)

// format writes file patches back as patch text, the way Parse reads them.
func format(fps []FilePatch) []byte {
	var b bytes.Buffer
	name := func(prefix, p string) string {
		if p == "" {
			return devNull
		}
		if strings.ContainsAny(p, "\"\\") || !strconv.CanBackquote(p) {
			return strconv.Quote(prefix + p)
		}
		return prefix + p
	}
	header := func(prefix, p string) string {
		n := name(prefix, p)
		if strings.Contains(n, " ") && !strings.HasPrefix(n, `"`) {
			n += "\t"
		}
		return n
	}
	for _, fp := range fps {
		if fp.NewMode != 0 || len(fp.Hunks) == 0 {
			fmt.Fprintf(&b, "diff --git %s %s\n", name("a/", fp.Path()), name("b/", fp.Path()))
			mode := "100644"
			if fp.NewMode == 0o755 {
				mode = "100755"
			}
			switch fp.Op() {
			case Create:
				fmt.Fprintf(&b, "new file mode %s\n", mode)
			case Delete:
				fmt.Fprintf(&b, "deleted file mode 100644\n")
			case Modify:
				fmt.Fprintf(&b, "old mode 100644\nnew mode %s\n", mode)
			}
		}
		if len(fp.Hunks) == 0 {
			continue
		}
		fmt.Fprintf(&b, "--- %s\n+++ %s\n", header("a/", fp.OldPath), header("b/", fp.NewPath))
		for _, h := range fp.Hunks {
			fmt.Fprintf(&b, "@@ -%d,%d +%d,%d @@\n", h.OldStart, h.OldLines, h.NewStart, h.NewLines)
			for _, l := range h.Lines {
				b.WriteByte(l.Kind)
				b.WriteString(l.Text)
				if !strings.HasSuffix(l.Text, "\n") {
					b.WriteString("\n\\ No newline at end of file\n")
				}
			}
		}
	}
	return b.Bytes()
}

// sides returns the old and new content that fp's hunks describe, laid end
// to end, and fp with its old line numbers moved to where its hunks are in
// that old content.
func sides(fp FilePatch) (old, new []byte, moved FilePatch) {
	moved = fp
	moved.Hunks = make([]Hunk, len(fp.Hunks))
	at := 0
	for i, h := range fp.Hunks {
		n := 0
		for _, l := range h.Lines {
			if l.Kind != '+' {
				old = append(old, l.Text...)
				n++
			}
			if l.Kind != '-' {
				new = append(new, l.Text...)
			}
		}
		h.OldStart = at + 1
		if n == 0 {
			h.OldStart = at
		}
		moved.Hunks[i] = h
		at += n
	}
	if old == nil {
		old = []byte{}
	}
	if new == nil {
		new = []byte{}
	}
	return old, new, moved
}

// checkConsistent checks what must hold for every patch Parse accepts.
func checkConsistent(t *testing.T, patch []byte, fps []FilePatch) {
	t.Helper()
	seen := map[string]bool{}
	for _, fp := range fps {
		if seen[fp.Path()] {
			t.Fatalf("%s patched twice", fp.Path())
		}
		seen[fp.Path()] = true
		if fp.OldPath != "" && fp.NewPath != "" && fp.OldPath != fp.NewPath {
			t.Fatalf("rename %q -> %q", fp.OldPath, fp.NewPath)
		}
		for _, h := range fp.Hunks {
			var nOld, nNew int
			for _, l := range h.Lines {
				if l.Kind != '+' {
					nOld++
				}
				if l.Kind != '-' {
					nNew++
				}
			}
			if nOld != h.OldLines || nNew != h.NewLines {
				t.Fatalf("hunk %+v has %d old and %d new lines", h, nOld, nNew)
			}
		}

		// The file the hunks describe takes the patch back exactly.
		old, new, moved := sides(fp)
		switch fp.Op() {
		case Create:
			got, err := Apply(fp, nil)
			if err != nil || got == nil || !bytes.Equal(got, new) {
				t.Fatalf("create %s: %q, %v; want %q", fp.Path(), got, err, new)
			}
			if _, err := Apply(fp, []byte{}); err == nil {
				t.Fatalf("create %s over an existing file succeeded", fp.Path())
			}
		case Delete:
			got, err := Apply(fp, old)
			if err != nil || got != nil {
				t.Fatalf("delete %s: %q, %v", fp.Path(), got, err)
			}
		case Modify:
			got, err := Apply(moved, old)
			if err != nil || got == nil || !bytes.Equal(got, new) {
				t.Fatalf("modify %s of\n%q\n%#v: %q, %v; want %q", fp.Path(), old, moved, got, err, new)
			}
			// With the line numbers of the patch it may not apply, but
			// it must not panic.
			_, _ = Apply(fp, old)
			_, _ = Apply(fp, patch)
		}
	}

	// Written back, the patch parses the same.
	again, err := Parse(format(fps))
	if err != nil {
		t.Fatalf("Parse of the formatted patch\n%s: %v", format(fps), err)
	}
	if !reflect.DeepEqual(again, fps) {
		t.Fatalf("formatted and parsed again:\n%#v\nwant\n%#v", again, fps)
	}
}

// seeds are patches for the fuzzers to start from.
var seeds = []string{
	"--- a/src/app.py\n+++ b/src/app.py\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n",
	"diff --git a/run.sh b/run.sh\nnew file mode 100755\n--- /dev/null\n+++ b/run.sh\n@@ -0,0 +1 @@\n+echo hi\n",
	"diff --git a/tool b/tool\nold mode 100644\nnew mode 100755\ndiff --git a/e b/e\nnew file mode 100644\n",
	"--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+c\n\\ No newline at end of file\n",
	"--- a/w.txt\r\n+++ b/w.txt\r\n@@ -1,2 +1,2 @@\r\n a\r\n-b\r\n+c\r\n",
	"--- a/f\n+++ b/f\n@@ -1,3 +1,3 @@\n a\n\n-b\n+c\n\n@@ -10 +10 @@\n-x\n+y",
	"diff --git \"a/caf\\303\\251\" \"b/caf\\303\\251\"\n--- \"a/caf\\303\\251\"\n+++ \"b/caf\\303\\251\"\n@@ -1 +1 @@\n-x\n+y\n",
	"--- a/o\n+++ /dev/null\n@@ -1,2 +0,0 @@\n-a\n-b\n--- a/my file\t\n+++ b/my file\t\n@@ -5,0 +6 @@\n+x\n",
	"From x\nSubject: y\n\n---\ndiff --git a/a b/a\nindex 1..2 100644\n--- a/a\n+++ b/a\n@@ -1 +1 @@\n-x\n+y\n-- \n2.39.5\n",
}

func FuzzParse(f *testing.F) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	r := rand.New(rand.NewPCG(5, 6))
	for range 20 {
		a := randomText(r)
		f.Add(textdiff.Unified("a/f", "b/f", a, edit(r, a)))
	}
	f.Fuzz(func(t *testing.T, patch []byte) {
		fps, err := Parse(patch)
		if err != nil {
			return
		}
		checkConsistent(t, patch, fps)
	})
}

func FuzzRoundTrip(f *testing.F) {
	f.Add([]byte("a\nb\nc\n"), []byte("a\nB\nc\n"), false, false)
	f.Add([]byte("a\nb"), []byte("a\nb\n"), false, false)
	f.Add([]byte(""), []byte("x"), true, false)
	f.Add([]byte("x\r\ny\r\n"), []byte(""), false, true)
	f.Add([]byte(""), []byte(""), true, false)
	f.Add([]byte("\\ No newline at end of file\n--- a\n+++ b\n"), []byte("@@ -1 +1 @@\n"), false, false)
	f.Fuzz(func(t *testing.T, a, b []byte, aMissing, bMissing bool) {
		if aMissing {
			a = nil
		} else if a == nil {
			a = []byte{}
		}
		if bMissing {
			b = nil
		} else if b == nil {
			b = []byte{}
		}
		roundTrip(t, a, b)
	})
}

// roundTrip checks that the patch Unified makes from a to b parses and
// applies to a to give b exactly.
func roundTrip(t *testing.T, a, b []byte) {
	t.Helper()
	diff := textdiff.Unified("a/dir/f", "b/dir/f", a, b)
	if diff == nil {
		if (a == nil) != (b == nil) || !bytes.Equal(a, b) {
			t.Fatalf("no patch from %q to %q", a, b)
		}
		return
	}
	fps, err := Parse(diff)
	if err != nil {
		t.Fatalf("Parse of\n%s: %v", diff, err)
	}
	if len(fps) != 1 || fps[0].Path() != "dir/f" {
		t.Fatalf("Parse of\n%s: %#v", diff, fps)
	}
	got, err := Apply(fps[0], a)
	if err != nil {
		t.Fatalf("Apply of\n%s\nto %q: %v", diff, a, err)
	}
	if (got == nil) != (b == nil) || !bytes.Equal(got, b) {
		t.Fatalf("Apply of\n%s\nto %q = %q, want %q", diff, a, got, b)
	}
	checkConsistent(t, diff, fps)
}

// vocabulary holds lines that repeat, lines that look like patch syntax,
// CRLF and NUL bytes.
var vocabulary = []string{
	"a\n", "b\n", "c\n", "\n", "}\n", "x\r\n", "\r\n", "--- a/f\n", "+++ b/f\n", "@@ -1 +1 @@\n",
	"\\ No newline at end of file\n", "diff --git a/f b/f\n", "-\n", "+\n", " \n", "nul\x00\n", "\xff\n",
}

func randomText(r *rand.Rand) []byte {
	if r.IntN(10) == 0 {
		return nil
	}
	b := []byte{}
	for range r.IntN(40) {
		if r.IntN(4) == 0 {
			b = fmt.Appendf(b, "unique %d\n", r.IntN(1000))
		} else {
			b = append(b, vocabulary[r.IntN(len(vocabulary))]...)
		}
	}
	if len(b) > 0 && r.IntN(3) == 0 {
		b = b[:len(b)-1]
	}
	return b
}

func edit(r *rand.Rand, a []byte) []byte {
	if a == nil || r.IntN(8) == 0 {
		return randomText(r)
	}
	var out []byte
	for _, l := range strings.SplitAfter(string(a), "\n") {
		switch r.IntN(10) {
		case 0:
		case 1:
			out = append(out, vocabulary[r.IntN(len(vocabulary))]...)
		case 2:
			out = append(append(out, l...), vocabulary[r.IntN(len(vocabulary))]...)
		default:
			out = append(out, l...)
		}
	}
	if out == nil {
		out = []byte{}
	}
	if r.IntN(6) == 0 {
		out = append(out, "tail"...)
	}
	return out
}

func TestRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	n := 5000
	if testing.Short() {
		n = 1000
	}
	for range n {
		a := randomText(r)
		b := edit(r, a)
		roundTrip(t, a, b)
	}
}

// TestRoundTripWorkspace applies a patch of many files, the way a workspace
// diff writes them, to the files it came from.
func TestRoundTripWorkspace(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	before, after := map[string][]byte{}, map[string][]byte{}
	var patch []byte
	for i := range 200 {
		name := fmt.Sprintf("dir %d/file-%d.txt", i%7, i)
		a := randomText(r)
		b := edit(r, a)
		before[name], after[name] = a, b
		patch = append(patch, textdiff.Unified("a/"+name, "b/"+name, a, b)...)
	}
	fps, err := Parse(patch)
	if err != nil {
		t.Fatal(err)
	}
	for _, fp := range fps {
		got, err := Apply(fp, before[fp.Path()])
		if err != nil {
			t.Fatal(err)
		}
		before[fp.Path()] = got
	}
	for name, want := range after {
		if got := before[name]; (got == nil) != (want == nil) || !bytes.Equal(got, want) {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
}

// TestFormatRoundTrip checks the test's own formatter on the Parse table.
func TestFormatRoundTrip(t *testing.T) {
	for _, s := range seeds {
		fps, err := Parse([]byte(s))
		if err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		checkConsistent(t, []byte(s), fps)
	}
}
