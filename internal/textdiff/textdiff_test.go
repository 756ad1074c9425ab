package textdiff_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pyro-sandbox/pyro/internal/patch"
	"github.com/pyro-sandbox/pyro/internal/textdiff"
)

// section is one "-- name --" part of a golden file, as in txtar.
type section struct {
	name string
	data []byte
}

// parseGolden splits a golden file into its comment and sections, like
// golang.org/x/tools/txtar (which we do not depend on for a test).
func parseGolden(t *testing.T, data []byte) (comment string, sections []section) {
	t.Helper()
	lines := strings.SplitAfter(string(data), "\n")
	cur := -1
	for _, l := range lines {
		if name, ok := strings.CutPrefix(strings.TrimSuffix(l, "\n"), "-- "); ok && strings.HasSuffix(name, " --") {
			sections = append(sections, section{name: strings.TrimSuffix(name, " --"), data: []byte{}})
			cur++
			continue
		}
		if cur < 0 {
			comment += l
		} else {
			sections[cur].data = append(sections[cur].data, l...)
		}
	}
	return comment, sections
}

// clean turns the markers of the golden files into text: "$" ends a line
// that would otherwise look blank, "^D" ends a text without a newline.
func clean(text []byte) []byte {
	text = bytes.ReplaceAll(text, []byte("$\n"), []byte("\n"))
	return append([]byte{}, bytes.TrimSuffix(text, []byte("^D\n"))...) // never nil: nil is a missing file
}

func TestUnifiedGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.txt")
	if len(files) == 0 {
		t.Fatal("no testdata")
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			comment, s := parseGolden(t, data)
			if len(s) != 3 || s[0].name != "old" || s[1].name != "new" || s[2].name != "diff" {
				t.Fatalf("want sections old, new and diff")
			}
			old, new := clean(s[0].data), clean(s[1].data)
			if strings.Contains(comment, "absent: old") {
				old = nil
			}
			if strings.Contains(comment, "absent: new") {
				new = nil
			}
			got := textdiff.Unified("a/f", "b/f", old, new)
			want := clean(s[2].data)
			if len(want) == 0 {
				want = nil
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("have:\n%s\nwant:\n%s\ndiff:\n%s", got, want, textdiff.Unified("a/want", "b/have", want, got))
			}
			checkApplies(t, got, old, new)
		})
	}
}

func TestUnifiedNames(t *testing.T) {
	tests := []struct {
		oldName, newName string
		old, new         []byte
		want             string
	}{
		{"a/my file.txt", "b/my file.txt", []byte("x\n"), []byte("y\n"),
			"--- a/my file.txt\t\n+++ b/my file.txt\t\n@@ -1,1 +1,1 @@\n-x\n+y\n"},
		{"a/say \"hi\"\t.txt", "b/say \"hi\"\t.txt", []byte("x\n"), []byte("y\n"),
			"--- \"a/say \\\"hi\\\"\\t.txt\"\n+++ \"b/say \\\"hi\\\"\\t.txt\"\n@@ -1,1 +1,1 @@\n-x\n+y\n"},
		{"a/caf\xc3\xa9\x01\xff", "b/caf\xc3\xa9\x01\xff", []byte("x\n"), []byte("y\n"),
			"--- \"a/caf\xc3\xa9\\001\\377\"\n+++ \"b/caf\xc3\xa9\\001\\377\"\n@@ -1,1 +1,1 @@\n-x\n+y\n"},
		{"ignored", "b/dir/new file", nil, []byte{},
			"diff --git a/dir/new file b/dir/new file\nnew file mode 100644\n"},
		{"a/f", "ignored", []byte{}, nil, "diff --git a/f b/f\ndeleted file mode 100644\n"},
		{"old", "new", nil, nil, ""},
		{"old", "new", []byte{}, []byte{}, ""},
		{"old", "new", []byte("same"), []byte("same"), ""},
	}
	for _, tt := range tests {
		got := string(textdiff.Unified(tt.oldName, tt.newName, tt.old, tt.new))
		if got != tt.want {
			t.Errorf("Unified(%q, %q, %q, %q) =\n%s\nwant\n%s", tt.oldName, tt.newName, tt.old, tt.new, got, tt.want)
		}
	}
}

// checkApplies parses diff and applies it to old, which must give new.
func checkApplies(t *testing.T, diff, old, new []byte) {
	t.Helper()
	if diff == nil {
		if (old == nil) != (new == nil) || !bytes.Equal(old, new) {
			t.Fatalf("no diff for different texts %q and %q", old, new)
		}
		return
	}
	fps, err := patch.Parse(diff)
	if err != nil {
		t.Fatalf("Parse of\n%s: %v", diff, err)
	}
	if len(fps) != 1 {
		t.Fatalf("Parse of\n%s: %d file patches, want 1", diff, len(fps))
	}
	got, err := patch.Apply(fps[0], old)
	if err != nil {
		t.Fatalf("Apply of\n%s\nto %q: %v", diff, old, err)
	}
	if (got == nil) != (new == nil) || !bytes.Equal(got, new) {
		t.Fatalf("Apply of\n%s\nto %q = %q, want %q", diff, old, got, new)
	}
}

// vocabulary holds lines that repeat (so that anchors are scarce), lines
// that look like patch syntax, and CRLF and NUL bytes.
var vocabulary = []string{
	"a\n", "b\n", "c\n", "d\n", "e\n", "\n", "}\n", "\treturn nil\n", "x\r\n", "\r\n",
	"--- a/f\n", "+++ b/f\n", "@@ -1,2 +1,2 @@\n", "\\ No newline at end of file\n",
	"diff --git a/f b/f\n", "-\n", "+\n", " \n", "nul\x00byte\n", "caf\xc3\xa9 \xff\n",
}

// randomText returns a random text, nil (a missing file) one time in ten.
func randomText(r *rand.Rand) []byte {
	if r.IntN(10) == 0 {
		return nil
	}
	var b []byte
	if r.IntN(2) == 0 {
		b = []byte{} // an existing empty file unless lines are added
	}
	for range r.IntN(40) {
		if r.IntN(4) == 0 {
			b = fmt.Appendf(b, "unique %d\n", r.IntN(1000))
		} else {
			b = append(b, vocabulary[r.IntN(len(vocabulary))]...)
		}
	}
	if len(b) > 0 && r.IntN(3) == 0 {
		b = b[:len(b)-1] // no newline at the end
	}
	return b
}

// edit returns a random edit of a: lines deleted, inserted, replaced, and the
// end of the text changed.
func edit(r *rand.Rand, a []byte) []byte {
	if a == nil || r.IntN(8) == 0 {
		return randomText(r)
	}
	lines := strings.SplitAfter(string(a), "\n")
	var out []string
	for _, l := range lines {
		switch r.IntN(10) {
		case 0: // delete
		case 1:
			out = append(out, vocabulary[r.IntN(len(vocabulary))])
		case 2:
			out = append(out, l, vocabulary[r.IntN(len(vocabulary))])
		default:
			out = append(out, l)
		}
	}
	b := []byte(strings.Join(out, ""))
	switch r.IntN(6) {
	case 0:
		b = append(b, "tail"...)
	case 1:
		b = bytes.TrimSuffix(b, []byte("\n"))
	}
	return b
}

// TestUnifiedAppliesBack is the property the patch package relies on: a
// patch that Unified writes applies to old and gives new exactly.
func TestUnifiedAppliesBack(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	n := 5000
	if testing.Short() {
		n = 2000
	}
	for range n {
		a := randomText(r)
		b := edit(r, a)
		checkApplies(t, textdiff.Unified("a/f", "b/f", a, b), a, b)
		checkApplies(t, textdiff.Unified("a/f", "b/f", b, a), b, a)
	}
}

// TestUnifiedInterop checks that git apply and GNU patch read the patches of
// Unified as we do.
func TestUnifiedInterop(t *testing.T) {
	if testing.Short() {
		t.Skip("runs git and patch")
	}
	tools := map[string][]string{
		"git":   {"git", "apply", "--whitespace=nowarn", "-"},
		"patch": {"patch", "-p1", "-s", "-f", "--no-backup-if-mismatch", "-r", "-"},
	}
	for name, argv := range tools {
		if _, err := exec.LookPath(argv[0]); err != nil {
			t.Logf("%s not found: skipped", name)
			continue
		}
		t.Run(name, func(t *testing.T) {
			// Edge cases first, then random ones.
			cases := [][2][]byte{
				{nil, []byte{}}, {[]byte{}, nil}, {nil, []byte("x")}, {[]byte("x"), nil},
				{[]byte("x"), []byte("x\n")}, {[]byte("x\n"), []byte("x")}, {[]byte{}, []byte("x")},
				{[]byte("a\r\nb\r\n"), []byte("a\r\nc\r\n")},
			}
			r := rand.New(rand.NewPCG(3, 4))
			for range 150 {
				a := randomText(r)
				cases = append(cases, [2][]byte{a, edit(r, a)})
			}
			for i, c := range cases {
				a, b := c[0], c[1]
				if bytes.ContainsRune(a, 0) || bytes.ContainsRune(b, 0) {
					continue // both tools call files with NUL bytes binary
				}
				base := "f"
				if i%2 == 1 {
					base = "my file"
				}
				diff := textdiff.Unified("a/"+base, "b/"+base, a, b)
				if diff == nil {
					continue
				}
				if name == "patch" && base != "f" && bytes.HasPrefix(diff, []byte("diff --git ")) {
					continue // GNU patch cannot split a diff --git line with spaces (git writes the same)
				}
				dir := t.TempDir()
				file := filepath.Join(dir, base)
				if a != nil {
					if err := os.WriteFile(file, a, 0o644); err != nil {
						t.Fatal(err)
					}
				}
				cmd := exec.Command(argv[0], argv[1:]...)
				cmd.Dir = dir
				cmd.Env = outsideGit(dir)
				cmd.Stdin = bytes.NewReader(diff)
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("case %d: %s: %v\n%s\npatch:\n%s", i, name, err, out, diff)
				}
				got, err := os.ReadFile(file)
				if b == nil {
					if err == nil {
						t.Fatalf("case %d: %s left the deleted file, patch:\n%s", i, name, diff)
					}
					continue
				}
				if err != nil || !bytes.Equal(got, b) {
					t.Fatalf("case %d: %s gave %q (%v), want %q, patch:\n%s", i, name, got, err, b, diff)
				}
			}
		})
	}
}

// outsideGit returns an environment in which git does not find a repository
// around dir, so that git apply works on dir alone, like patch.
func outsideGit(dir string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GIT_") {
			env = append(env, kv)
		}
	}
	return append(env, "GIT_CEILING_DIRECTORIES="+filepath.Dir(dir))
}
