package patch

import (
	"fmt"
	"io/fs"
	"reflect"
	"strings"
	"testing"

	"github.com/pyro-sandbox/pyro/internal/errs"
)

// lines builds hunk lines from "kind+text" strings; a text ending with "$"
// has no newline.
func lines(ls ...string) []Line {
	out := make([]Line, len(ls))
	for i, l := range ls {
		text := l[1:] + "\n"
		if t, ok := strings.CutSuffix(l[1:], "$"); ok {
			text = t
		}
		out[i] = Line{Kind: l[0], Text: text}
	}
	return out
}

func TestParse(t *testing.T) {
	tests := []struct {
		name  string
		patch string
		want  []FilePatch
	}{
		{
			name:  "plain with prefixes",
			patch: "--- a/src/app.py\n+++ b/src/app.py\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n",
			want: []FilePatch{{OldPath: "src/app.py", NewPath: "src/app.py", Hunks: []Hunk{
				{1, 3, 1, 3, lines(" a", "-b", "+B", " c")}}}},
		},
		{
			name:  "no prefixes, timestamps, counts of 1 left out, section heading",
			patch: "--- app.py\t2024-01-01 00:00:00.000000000 +0000\n+++ app.py\t2024-01-02 00:00:00.000000000 +0000\n@@ -7 +7 @@ def main():\n-x\n+y\n",
			want:  []FilePatch{{OldPath: "app.py", NewPath: "app.py", Hunks: []Hunk{{7, 1, 7, 1, lines("-x", "+y")}}}},
		},
		{
			name: "git, with a commit message, two files and a signature",
			patch: "From 1234 Mon Sep 17 00:00:00 2001\nSubject: [PATCH] fix\n\n- a bullet\n+ another\n---\n a | 2 +-\n\n" +
				"diff --git a/a b/a\nindex 1111111..2222222 100644\n--- a/a\n+++ b/a\n@@ -1 +1 @@\n-x\n+y\n" +
				"diff --git a/dir/b b/dir/b\nindex 1111111..2222222 100644\n--- a/dir/b\n+++ b/dir/b\n@@ -1,2 +1,2 @@\n-x\n+y\n z\n" +
				"-- \n2.39.5\n\n",
			want: []FilePatch{
				{OldPath: "a", NewPath: "a", Hunks: []Hunk{{1, 1, 1, 1, lines("-x", "+y")}}},
				{OldPath: "dir/b", NewPath: "dir/b", Hunks: []Hunk{{1, 2, 1, 2, lines("-x", "+y", " z")}}},
			},
		},
		{
			name:  "create and delete",
			patch: "--- /dev/null\n+++ b/new.txt\n@@ -0,0 +1,2 @@\n+a\n+b\n--- a/old.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-gone\n",
			want: []FilePatch{
				{NewPath: "new.txt", Hunks: []Hunk{{0, 0, 1, 2, lines("+a", "+b")}}},
				{OldPath: "old.txt", Hunks: []Hunk{{1, 1, 0, 0, lines("-gone")}}},
			},
		},
		{
			name: "git modes: executable file, mode change, empty files",
			patch: "diff --git a/run.sh b/run.sh\nnew file mode 100755\nindex 0000000..1111111\n--- /dev/null\n+++ b/run.sh\n@@ -0,0 +1 @@\n+echo hi\n" +
				"diff --git a/tool b/tool\nold mode 100644\nnew mode 100755\n" +
				"diff --git a/empty b/empty\nnew file mode 100644\nindex 0000000..e69de29\n" +
				"diff --git a/gone b/gone\ndeleted file mode 100644\nindex e69de29..0000000\n",
			want: []FilePatch{
				{NewPath: "run.sh", NewMode: 0o755, Hunks: []Hunk{{0, 0, 1, 1, lines("+echo hi")}}},
				{OldPath: "tool", NewPath: "tool", NewMode: 0o755},
				{NewPath: "empty", NewMode: 0o644},
				{OldPath: "gone"},
			},
		},
		{
			name: "no newline at the end, on both sides",
			patch: "--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+c\n\\ No newline at end of file\n" +
				"--- a/g\n+++ b/g\n@@ -1 +1,2 @@\n-x\n\\ Kein Zeilenumbruch am Dateiende.\n+x\n+y\n",
			want: []FilePatch{
				{OldPath: "f", NewPath: "f", Hunks: []Hunk{{1, 2, 1, 2, lines(" a", "-b$", "+c$")}}},
				{OldPath: "g", NewPath: "g", Hunks: []Hunk{{1, 1, 1, 2, lines("-x$", "+x", "+y")}}},
			},
		},
		{
			name:  "CRLF content kept, CRLF headers read",
			patch: "--- a/w.txt\r\n+++ b/w.txt\r\n@@ -1,2 +1,2 @@\r\n a\r\n-b\r\n+c\r\n",
			want: []FilePatch{{OldPath: "w.txt", NewPath: "w.txt", Hunks: []Hunk{{1, 2, 1, 2, []Line{
				{' ', "a\r\n"}, {'-', "b\r\n"}, {'+', "c\r\n"}}}}}},
		},
		{
			name:  "patch without its last newline, empty context line without its space, blank lines between hunks",
			patch: "--- a/f\n+++ b/f\n@@ -1,3 +1,3 @@\n a\n\n-b\n+c\n\n\n@@ -10 +10 @@\n-x\n+y",
			want: []FilePatch{{OldPath: "f", NewPath: "f", Hunks: []Hunk{
				{1, 3, 1, 3, lines(" a", " ", "-b", "+c")},
				{10, 1, 10, 1, lines("-x", "+y")},
			}}},
		},
		{
			name: "quoted and unusual names",
			patch: "diff --git \"a/caf\\303\\251 \\\"x\\\"\" \"b/caf\\303\\251 \\\"x\\\"\"\n--- \"a/caf\\303\\251 \\\"x\\\"\"\n+++ \"b/caf\\303\\251 \\\"x\\\"\"\n@@ -1 +1 @@\n-x\n+y\n" +
				"diff --git a/my file b/my file\n--- a/my file\t\n+++ b/my file\t\n@@ -1 +1 @@\n-x\n+y\n" +
				"--- a/./dir//f\n+++ b/dir/f\n@@ -1 +1 @@\n-x\n+y\n",
			want: []FilePatch{
				{OldPath: "café \"x\"", NewPath: "café \"x\"", Hunks: []Hunk{{1, 1, 1, 1, lines("-x", "+y")}}},
				{OldPath: "my file", NewPath: "my file", Hunks: []Hunk{{1, 1, 1, 1, lines("-x", "+y")}}},
				{OldPath: "dir/f", NewPath: "dir/f", Hunks: []Hunk{{1, 1, 1, 1, lines("-x", "+y")}}},
			},
		},
		{
			name:  "content lines that look like headers",
			patch: "--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n--- a/x\n++++ b/x\n @@ -1 +1 @@\n",
			want:  []FilePatch{{OldPath: "f", NewPath: "f", Hunks: []Hunk{{1, 2, 1, 2, lines("--- a/x", "++++ b/x", " @@ -1 +1 @@")}}}},
		},
		{
			name:  "content with NUL and invalid UTF-8",
			patch: "--- a/f\n+++ b/f\n@@ -1 +1 @@\n-\x00\xff\n+ok\n",
			want:  []FilePatch{{OldPath: "f", NewPath: "f", Hunks: []Hunk{{1, 1, 1, 1, lines("-\x00\xff", "+ok")}}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.patch))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got\n%#v\nwant\n%#v", got, tt.want)
			}
		})
	}
}

func TestParseOps(t *testing.T) {
	fps, err := Parse([]byte("--- /dev/null\n+++ b/n\n@@ -0,0 +1 @@\n+a\n--- a/o\n+++ /dev/null\n@@ -1 +0,0 @@\n-a\n--- a/m\n+++ b/m\n@@ -1 +1 @@\n-a\n+b\n"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, fp := range fps {
		got = append(got, fmt.Sprintf("%s %s", fp.Op(), fp.Path()))
	}
	if want := []string{"create n", "delete o", "modify m"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestParseRefuses(t *testing.T) {
	const hdr = "--- a/f\n+++ b/f\n"
	tests := []struct {
		name, patch, want string
	}{
		{"empty", "", "changes no file"},
		{"prose only", "Here is the fix.\nIt is good.\n", "changes no file"},
		{"hunk without header", "@@ -1 +1 @@\n-a\n+b\n", "patch line 1: hunk header \"@@ -1 +1 @@\" without a --- and a +++ line"},
		{"missing +++", "--- a/f\n@@ -1 +1 @@\n-a\n+b\n", "patch line 2: hunk header"},
		{"git binary", "diff --git a/img b/img\nindex 1..2 100644\nGIT binary patch\nliteral 5\n", "patch line 3: binary patches are not supported"},
		{"binary files differ", "Binary files a/img and b/img differ\n", "patch line 1: binary patches are not supported"},
		{"git binary files differ", "diff --git a/img b/img\nindex 1..2 100644\nBinary files a/img and b/img differ\n", "patch line 3: binary patches"},
		{"absolute", "--- /etc/passwd\n+++ /etc/passwd\n@@ -1 +1 @@\n-a\n+b\n", `patch line 1: file name "/etc/passwd" is an absolute path`},
		{"absolute after prefix", "--- a//etc/passwd\n+++ b//etc/passwd\n@@ -1 +1 @@\n-a\n+b\n", "is an absolute path"},
		{"dot dot", "--- a/../x\n+++ b/../x\n@@ -1 +1 @@\n-a\n+b\n", `file name "a/../x" leaves its directory`},
		{"dot dot inside", "--- a/d/../../x\n+++ b/d/../../x\n@@ -1 +1 @@\n-a\n+b\n", "leaves its directory"},
		{"dot dot in git line", "diff --git a/../x b/../x\nnew file mode 100644\n", "patch line 1: file name \"a/../x\" leaves"},
		{"NUL", "--- \"a/x\\000y\"\n+++ \"b/x\\000y\"\n@@ -1 +1 @@\n-a\n+b\n", "contains a NUL byte"},
		{"control character", "--- \"a/x\\033[31m\"\n+++ \"b/x\\033[31m\"\n@@ -1 +1 @@\n-a\n+b\n", "contains a control character"},
		{"invalid UTF-8", "--- a/x\xff\n+++ b/x\xff\n@@ -1 +1 @@\n-a\n+b\n", "is not valid UTF-8"},
		{"invalid UTF-8 quoted", "--- \"a/x\\377\"\n+++ \"b/x\\377\"\n@@ -1 +1 @@\n-a\n+b\n", "is not valid UTF-8"},
		{"empty name", "--- a/\n+++ b/\n@@ -1 +1 @@\n-a\n+b\n", `file name "a/" is empty`},
		{"dot name", "--- a/.\n+++ b/.\n@@ -1 +1 @@\n-a\n+b\n", "is empty"},
		{"long name", "--- a/" + strings.Repeat("x", 5000) + "\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n", "longer than 4096 bytes"},
		{"bad quoting", "--- \"a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n", "malformed quoted file name"},
		{"both dev null", "--- /dev/null\n+++ /dev/null\n@@ -0,0 +1 @@\n+a\n", "both file names are /dev/null"},
		{"twice", hdr + "@@ -1 +1 @@\n-a\n+b\n" + hdr + "@@ -5 +5 @@\n-a\n+b\n", "patch line 6: f is patched twice (first at patch line 1)"},
		{"created then patched", "--- /dev/null\n+++ b/f\n@@ -0,0 +1 @@\n+a\n" + hdr + "@@ -1 +1 @@\n-a\n+b\n", "f is patched twice"},
		{"rename by names", "--- a/x\n+++ b/y\n@@ -1 +1 @@\n-a\n+b\n", `the old and new names differ ("x" and "y")`},
		{"git rename", "diff --git a/x b/y\nsimilarity index 100%\nrename from x\nrename to y\n", "patch line 3: renaming or copying files is not supported"},
		{"git copy", "diff --git a/x b/y\ncopy from x\ncopy to y\n", "renaming or copying"},
		{"git names disagree", "diff --git a/x b/x\n--- a/y\n+++ b/y\n@@ -1 +1 @@\n-a\n+b\n", "name another file than the diff --git line"},
		{"git no names", "diff --git a/x b/y\nnew file mode 100644\n", "cannot tell the file name"},
		{"git hunk without names", "diff --git a/x b/x\nindex 1..2 100644\n@@ -1 +1 @@\n-a\n+b\n", "patch line 3: the hunks of a diff --git file patch need a --- and a +++ line"},
		{"git nothing", "diff --git a/x b/x\nindex 1..2 100644\n", "changes nothing"},
		{"git --- alone", "diff --git a/x b/x\n--- a/x\n@@ -1 +1 @@\n", "patch line 2: a --- line must be followed by a +++ line"},
		{"git create and delete", "diff --git a/x b/x\nnew file mode 100644\ndeleted file mode 100644\n", "both create and delete"},
		{"git new file not from /dev/null", "diff --git a/x b/x\nnew file mode 100644\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n", `must be "--- /dev/null"`},
		{"git deleted file not to /dev/null", "diff --git a/x b/x\ndeleted file mode 100644\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n", `must be "+++ /dev/null"`},
		{"symlink", "diff --git a/l b/l\nnew file mode 120000\n--- /dev/null\n+++ b/l\n@@ -0,0 +1 @@\n+target\n", "patch line 2: symbolic links cannot be patched"},
		{"submodule", "diff --git a/m b/m\nindex 1..2 160000\nold mode 160000\nnew mode 160000\n", "submodules cannot be patched"},
		{"bad mode", "diff --git a/m b/m\nold mode 100644\nnew mode 10z755\n", "malformed file mode"},
		{"directory mode", "diff --git a/m b/m\nnew file mode 040000\n", "is not a regular file's"},
		{"no hunk", hdr, "patch line 3: f has no hunk after its --- and +++ lines"},
		{"no hunk before next file", hdr + "--- a/g\n+++ b/g\n@@ -1 +1 @@\n-a\n+b\n", "f has no hunk"},
		{"malformed hunk header", hdr + "@@ -1,2 +1,2\n a\n", `patch line 3: malformed hunk header "@@ -1,2 +1,2"`},
		{"hunk header without numbers", hdr + "@@ ... @@\n a\n", "malformed hunk header"},
		{"hunk header with a huge number", hdr + "@@ -1,2 +1,12345678901 @@\n a\n", "malformed hunk header"},
		{"hunk header counting too much", hdr + "@@ -1,2 +1,999999999 @@\n a\n", "counts more lines than a patch can hold"},
		{"combined diff", hdr + "@@@ -1 -1 +1 @@@\n  a\n", "combined diffs"},
		{"empty hunk", hdr + "@@ -1,0 +1,0 @@\n", "counts no lines"},
		{"line zero", hdr + "@@ -0,1 +0,1 @@\n-a\n+b\n", "line numbers start at 1"},
		{"too few lines at end", hdr + "@@ -1,3 +1,3 @@\n a\n-b\n+c\n", "patch line 3: hunk header \"@@ -1,3 +1,3 @@\" of f counts 3 old and 3 new lines, but the patch ends after 2 old and 2 new lines"},
		{"too few lines before text", hdr + "@@ -1,3 +1,3 @@\n a\n-b\n+c\nThanks!\n", "but the hunk ends at patch line 7 (\"Thanks!\") after 2 old and 2 new lines"},
		{"too few lines before next hunk", hdr + "@@ -1,3 +1,3 @@\n a\n-b\n+c\n@@ -9 +9 @@\n-x\n+y\n", "the hunk ends at patch line 7 (\"@@ -9 +9 @@\")"},
		{"too many old lines", hdr + "@@ -1,2 +1,3 @@\n a\n c\n-d\n+x\n+y\n", `patch line 6: hunk header "@@ -1,2 +1,3 @@" (patch line 3) of f counts 2 old lines (context and removed), but the hunk has more`},
		{"too many new lines", hdr + "@@ -1,3 +1,2 @@\n a\n c\n+d\n-b\n", "counts 2 new lines (context and added), but the hunk has more"},
		{"stray line after hunk", hdr + "@@ -1,2 +1,2 @@\n a\n-b\n+c\n d\n", `patch line 7: " d" follows hunk 1 of f, whose header @@ -1,2 +1,2 @@ counts fewer lines`},
		{"stray line after blank", hdr + "@@ -1,2 +1,2 @@\n a\n-b\n+c\n\n+d\n", `patch line 8: "+d" follows hunk 1 of f`},
		{"stray +++ after hunk", hdr + "@@ -1 +1 @@\n-b\n+c\n+++ b/g\n", "follows hunk 1 of f"},
		{"marker first", hdr + "@@ -1 +1 @@\n\\ No newline at end of file\n-a\n+b\n", "must follow the last line of a file"},
		{"two markers", hdr + "@@ -1 +1 @@\n-a\n\\ No newline at end of file\n\\ No newline at end of file\n+b\n", "two \"\\ No newline at end of file\" lines"},
		{"empty line without newline", hdr + "@@ -1,2 +1 @@\n \n-\n\\ No newline at end of file\n", "an empty line cannot be the last line"},
		{"line after end of old file", hdr + "@@ -1,2 +1,1 @@\n-a\n\\ No newline at end of file\n-b\n+c\n", "patch line 6: f has a line after the end of its old file (\"\\ No newline at end of file\" at patch line 5)"},
		{"line after end of new file", hdr + "@@ -1,1 +1,2 @@\n+a\n\\ No newline at end of file\n b\n", "a line after the end of its new file"},
		{"hunk after end of file", hdr + "@@ -1 +1 @@\n a\n\\ No newline at end of file\n@@ -3 +3 @@\n-c\n+d\n", "a line after the end of its old file"},
		{"create with context", "--- /dev/null\n+++ b/n\n@@ -1,1 +1,2 @@\n a\n+b\n", "patch line 1: n is created (--- /dev/null), so it must have one hunk of added lines only"},
		{"create with two hunks", "--- /dev/null\n+++ b/n\n@@ -0,0 +1 @@\n+a\n@@ -0,0 +2 @@\n+b\n", "n is created"},
		{"delete with added lines", "--- a/o\n+++ /dev/null\n@@ -1 +1 @@\n-a\n+b\n", "o is deleted (+++ /dev/null), so it must have one hunk of removed lines only"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fps, err := Parse([]byte(tt.patch))
			if err == nil {
				t.Fatalf("Parse succeeded: %#v", fps)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
			if k := errs.KindOf(err); k != errs.Invalid {
				t.Errorf("error kind %s, want %s", k, errs.Invalid)
			}
			if errs.HintOf(err) == "" {
				t.Errorf("error %q has no hint", err)
			}
		})
	}
}

func TestParseBounds(t *testing.T) {
	var b strings.Builder
	for i := range MaxFiles + 1 {
		fmt.Fprintf(&b, "--- a/f%d\n+++ b/f%d\n@@ -1 +1 @@\n-a\n+b\n", i, i)
	}
	if _, err := Parse([]byte(b.String())); err == nil || !strings.Contains(err.Error(), "more than 10000 files") {
		t.Errorf("%d files: %v", MaxFiles+1, err)
	}

	head := "--- a/f\n+++ b/f\n@@ -1,999997 +1,999997 @@\n"
	body := strings.Repeat(" x\n", MaxLines-3)
	if _, err := Parse([]byte(head + body)); err != nil {
		t.Errorf("%d lines: %v", MaxLines, err)
	}
	if _, err := Parse([]byte(head + body + " x")); err == nil || !strings.Contains(err.Error(), "has 1000001 lines, more than the limit of 1000000") {
		t.Errorf("%d lines: %v", MaxLines+1, err)
	}
}

func TestSplitGitNames(t *testing.T) {
	tests := []struct {
		in, old, new string
		ok           bool
	}{
		{"a/x b/x", "a/x", "b/x", true},
		{"x x", "x", "x", true},
		{"a/my file b/my file", "a/my file", "b/my file", true},
		{"a/x b/y", "", "", false},
		{"a/x  b/x", "", "", false},
		{`"a/x y" "b/x y"`, "a/x y", "b/x y", true},
		{`"a/\"q\"" b/"q"`, `a/"q"`, `b/"q"`, true},
		{`a/"q" "b/\"q\""`, `a/"q"`, `b/"q"`, true},
		{`"a/x`, "", "", false},
		{`"a/x""b/x"`, "", "", false},
	}
	for _, tt := range tests {
		old, new, ok := splitGitNames(tt.in)
		if old != tt.old || new != tt.new || ok != tt.ok {
			t.Errorf("splitGitNames(%q) = %q, %q, %v; want %q, %q, %v", tt.in, old, new, ok, tt.old, tt.new, tt.ok)
		}
	}
}

func TestModeValues(t *testing.T) {
	fps, err := Parse([]byte("diff --git a/x b/x\nold mode 100755\nnew mode 100664\n"))
	if err != nil {
		t.Fatal(err)
	}
	if fps[0].NewMode != fs.FileMode(0o644) {
		t.Errorf("NewMode = %o, want 644", fps[0].NewMode)
	}
}
