package patch

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pyro-sandbox/pyro/internal/errs"
)

// numbered returns lines "l1" to "ln", each with its newline.
func numbered(n int) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "l%d\n", i)
	}
	return b.String()
}

func TestApply(t *testing.T) {
	absent := "\x00absent" // stands for a missing file, before or after
	tests := []struct {
		name, patch, old, want string
	}{
		{
			name:  "exact",
			patch: "--- a/f\n+++ b/f\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n",
			old:   "a\nb\nc\n",
			want:  "a\nB\nc\n",
		},
		{
			name:  "offset forward",
			patch: "--- a/f\n+++ b/f\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n",
			old:   "0\n1\n2\n3\n4\na\nb\nc\nd\n",
			want:  "0\n1\n2\n3\n4\na\nB\nc\nd\n",
		},
		{
			name:  "offset backward",
			patch: "--- a/f\n+++ b/f\n@@ -10,3 +10,3 @@\n a\n-b\n+B\n c\n",
			old:   "0\na\nb\nc\nd\n",
			want:  "0\na\nB\nc\nd\n",
		},
		{
			name:  "nearest of two places",
			patch: "--- a/f\n+++ b/f\n@@ -17,2 +17,2 @@\n a\n-b\n+B\n",
			old:   "0\na\nb\n" + numbered(16) + "a\nb\n",
			want:  "0\na\nb\n" + numbered(16) + "a\nB\n",
		},
		{
			name:  "the later place on a tie",
			patch: "--- a/f\n+++ b/f\n@@ -11,2 +11,2 @@\n a\n-b\n+B\n",
			old:   numbered(5) + "a\nb\n" + numbered(8) + "a\nb\n",
			want:  numbered(5) + "a\nb\n" + numbered(8) + "a\nB\n",
		},
		{
			name: "the offset of a hunk carries to the next",
			// Hunk 1 applies 5 lines later than its header says, so hunk 2
			// is looked for 5 lines later too, where its second copy is.
			patch: "--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n h\n-i\n+I\n@@ -10,2 +10,2 @@\n x\n-y\n+Y\n",
			old:   "1\n2\n3\n4\n5\nh\ni\n8\n9\nx\ny\n12\n13\n14\nx\ny\n17\n",
			want:  "1\n2\n3\n4\n5\nh\nI\n8\n9\nx\ny\n12\n13\n14\nx\nY\n17\n",
		},
		{
			name:  "several hunks",
			patch: "--- a/f\n+++ b/f\n@@ -1,3 +1,4 @@\n+l0\n l1\n l2\n l3\n@@ -8,5 +9,3 @@\n l8\n-l9\n-l10\n l11\n l12\n@@ -20,0 +20,1 @@\n+l20.5\n",
			old:   numbered(22),
			want: "l0\n" + strings.Replace(strings.Replace(numbered(22), "l9\nl10\n", "", 1),
				"l20\n", "l20\nl20.5\n", 1),
		},
		{
			name:  "insertion without context",
			patch: "--- a/f\n+++ b/f\n@@ -2,0 +3 @@\n+x\n",
			old:   "a\nb\nc\n",
			want:  "a\nb\nx\nc\n",
		},
		{
			name:  "insertion at the start",
			patch: "--- a/f\n+++ b/f\n@@ -0,0 +1 @@\n+x\n",
			old:   "a\n",
			want:  "x\na\n",
		},
		{
			name:  "add the missing newline",
			patch: "--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+b\n",
			old:   "a\nb",
			want:  "a\nb\n",
		},
		{
			name:  "remove the newline",
			patch: "--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n a\n-b\n+b\n\\ No newline at end of file\n",
			old:   "a\nb\n",
			want:  "a\nb",
		},
		{
			name:  "change the last line, no newline on either side",
			patch: "--- a/f\n+++ b/f\n@@ -2 +2 @@\n-b\n\\ No newline at end of file\n+c\n\\ No newline at end of file\n",
			old:   "a\nb",
			want:  "a\nc",
		},
		{
			name:  "append to a file without a newline",
			patch: "--- a/f\n+++ b/f\n@@ -1 +1,2 @@\n-a\n\\ No newline at end of file\n+a\n+b\n",
			old:   "a",
			want:  "a\nb\n",
		},
		{
			name:  "CRLF file and patch",
			patch: "--- a/f\r\n+++ b/f\r\n@@ -1,2 +1,2 @@\r\n a\r\n-b\r\n+c\r\n",
			old:   "a\r\nb\r\n",
			want:  "a\r\nc\r\n",
		},
		{
			name:  "content with NUL and invalid UTF-8",
			patch: "--- a/f\n+++ b/f\n@@ -1 +1 @@\n-\x00\xff\n+ok\n",
			old:   "\x00\xff\n",
			want:  "ok\n",
		},
		{
			name:  "create",
			patch: "--- /dev/null\n+++ b/f\n@@ -0,0 +1,2 @@\n+a\n+b\n\\ No newline at end of file\n",
			old:   absent,
			want:  "a\nb",
		},
		{
			name:  "create an empty file",
			patch: "diff --git a/f b/f\nnew file mode 100644\n",
			old:   absent,
			want:  "",
		},
		{
			name:  "delete",
			patch: "--- a/f\n+++ /dev/null\n@@ -1,2 +0,0 @@\n-a\n-b\n",
			old:   "a\nb\n",
			want:  absent,
		},
		{
			name:  "delete an empty file",
			patch: "diff --git a/f b/f\ndeleted file mode 100644\n",
			old:   "",
			want:  absent,
		},
		{
			name:  "mode only, empty file",
			patch: "diff --git a/f b/f\nold mode 100644\nnew mode 100755\n",
			old:   "",
			want:  "",
		},
		{
			name:  "empty the file",
			patch: "--- a/f\n+++ b/f\n@@ -1 +0,0 @@\n-a\n",
			old:   "a\n",
			want:  "",
		},
		{
			name:  "mode only",
			patch: "diff --git a/f b/f\nold mode 100644\nnew mode 100755\n",
			old:   "a\n",
			want:  "a\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fps, err := Parse([]byte(tt.patch))
			if err != nil {
				t.Fatal(err)
			}
			var old []byte
			if tt.old != absent {
				old = []byte(tt.old)
			}
			saved := bytes.Clone(old)
			got, err := Apply(fps[0], old)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(old, saved) {
				t.Errorf("Apply changed its input to %q", old)
			}
			switch {
			case tt.want == absent && got != nil:
				t.Errorf("got %q, want nil (a deleted file)", got)
			case tt.want != absent && got == nil:
				t.Errorf("got nil, want %q", tt.want)
			case tt.want != absent && string(got) != tt.want:
				t.Errorf("got\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}

func TestApplyRefuses(t *testing.T) {
	absent := "\x00absent"
	tests := []struct {
		name, patch, old string
		kind             errs.Kind
		want             string
	}{
		{
			name: "mismatch inside the hunk",
			patch: "--- a/src/app.py\n+++ b/src/app.py\n@@ -3 +3 @@\n-l3\n+L3\n" +
				"@@ -40,4 +40,4 @@\n l40\n l41\n-    return x\n+    return z\n l43\n",
			old:  strings.Replace(numbered(50), "l42\n", "    return y\n", 1),
			kind: errs.Conflict,
			want: `src/app.py: hunk 2 does not apply at line 40 (line 42: expected "    return x", found "    return y")`,
		},
		{
			name:  "mismatch on the first line",
			patch: "--- a/f\n+++ b/f\n@@ -2,2 +2,2 @@\n-x\n+y\n z\n",
			old:   "a\nb\nz\n",
			kind:  errs.Conflict,
			want:  `f: hunk 1 does not apply at line 2 (expected "x", found "b")`,
		},
		{
			name:  "reported where most of the hunk matches",
			patch: "--- a/f\n+++ b/f\n@@ -1,3 +1,3 @@\n l20\n l21\n-nope\n+yes\n",
			old:   numbered(30),
			kind:  errs.Conflict,
			want:  `f: hunk 1 does not apply at line 20 (line 22: expected "nope", found "l22")`,
		},
		{
			name:  "the file ends first",
			patch: "--- a/f\n+++ b/f\n@@ -1,4 +1,3 @@\n a\n b\n c\n-d\n",
			old:   "a\nb\nc\n",
			kind:  errs.Conflict,
			want:  `f: hunk 1 does not apply at line 1 (line 4: expected "d", found the end of the file)`,
		},
		{
			name:  "a newline at the end that the patch does not expect",
			patch: "--- a/f\n+++ b/f\n@@ -1 +1 @@\n-a\n\\ No newline at end of file\n+b\n",
			old:   "a\n",
			kind:  errs.Conflict,
			want:  `f: hunk 1 does not apply at line 1 (expected "a" without a newline at the end of the file, found "a")`,
		},
		{
			name:  "CRLF file, LF patch",
			patch: "--- a/f\n+++ b/f\n@@ -1 +1 @@\n-a\n+b\n",
			old:   "a\r\n",
			kind:  errs.Conflict,
			want:  `f: hunk 1 does not apply at line 1 (expected "a", found "a\r")`,
		},
		{
			name: "hunks never overlap",
			// Hunk 2's lines are only inside what hunk 1 replaced.
			patch: "--- a/f\n+++ b/f\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n@@ -2,2 +2,2 @@\n-c\n+C\n d\n",
			old:   "a\nb\nc\nx\n",
			kind:  errs.Conflict,
			want:  `f: hunk 2 does not apply at line 4 (expected "c", found "x")`,
		},
		{
			name:  "hunks apply in order",
			patch: "--- a/f\n+++ b/f\n@@ -3 +3 @@\n-c\n+C\n@@ -1 +1 @@\n-a\n+A\n",
			old:   "a\nb\nc\n",
			kind:  errs.Conflict,
			want:  `f: hunk 2 does not apply at line 4 (expected "a", found the end of the file)`,
		},
		{
			name:  "create an existing file",
			patch: "--- /dev/null\n+++ b/f\n@@ -0,0 +1 @@\n+a\n",
			old:   "",
			kind:  errs.Conflict,
			want:  "f: the patch creates this file, but it already exists",
		},
		{
			name:  "delete a missing file",
			patch: "--- a/f\n+++ /dev/null\n@@ -1 +0,0 @@\n-a\n",
			old:   absent,
			kind:  errs.NotFound,
			want:  "f: the patch deletes this file, but it does not exist",
		},
		{
			name:  "delete a file that changed",
			patch: "--- a/f\n+++ /dev/null\n@@ -1,2 +0,0 @@\n-a\n-b\n",
			old:   "a\nc\n",
			kind:  errs.Conflict,
			want:  `f: the patch deletes this file, but its content differs (line 2: expected "b", found "c")`,
		},
		{
			name:  "delete a file that grew",
			patch: "--- a/f\n+++ /dev/null\n@@ -1 +0,0 @@\n-a\n",
			old:   "a\nb\n",
			kind:  errs.Conflict,
			want:  `(line 2: expected the end of the file, found "b")`,
		},
		{
			name:  "delete a non-empty file as empty",
			patch: "diff --git a/f b/f\ndeleted file mode 100644\n",
			old:   "a\n",
			kind:  errs.Conflict,
			want:  `(line 1: expected the end of the file, found "a")`,
		},
		{
			name:  "modify a missing file",
			patch: "--- a/f\n+++ b/f\n@@ -1 +1 @@\n-a\n+b\n",
			old:   absent,
			kind:  errs.NotFound,
			want:  "f: no such file",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fps, err := Parse([]byte(tt.patch))
			if err != nil {
				t.Fatal(err)
			}
			var old []byte
			if tt.old != absent {
				old = []byte(tt.old)
			}
			got, err := Apply(fps[0], old)
			if err == nil {
				t.Fatalf("Apply succeeded: %q", got)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error\n%s\ndoes not contain\n%s", err, tt.want)
			}
			if k := errs.KindOf(err); k != tt.kind {
				t.Errorf("error kind %s, want %s", k, tt.kind)
			}
		})
	}
}

func TestApplyHandBuilt(t *testing.T) {
	tests := []struct {
		name string
		fp   FilePatch
		old  []byte
	}{
		{"unknown line kind", FilePatch{OldPath: "f", NewPath: "f", Hunks: []Hunk{{1, 1, 1, 1, []Line{{'?', "a\n"}}}}}, []byte("a\n")},
		{"create with context", FilePatch{NewPath: "f", Hunks: []Hunk{{1, 1, 1, 1, []Line{{' ', "a\n"}}}}}, nil},
		{"delete with added lines", FilePatch{OldPath: "f", Hunks: []Hunk{{1, 1, 1, 1, []Line{{'+', "a\n"}}}}}, []byte("a\n")},
	}
	for _, tt := range tests {
		if _, err := Apply(tt.fp, tt.old); errs.KindOf(err) != errs.Invalid {
			t.Errorf("%s: error %v, want one of kind %s", tt.name, err, errs.Invalid)
		}
	}
}

// TestApplyBoundedSearch gives Apply hunks whose line numbers each send it
// past the end of a big file, so that it finds each hunk by a search back
// across most of the file; it must give up in bounded time rather than
// compare every hunk with the whole file.
func TestApplyBoundedSearch(t *testing.T) {
	const n, hunks = 400_000, 2_000
	var p strings.Builder
	p.WriteString("--- a/f\n+++ b/f\n")
	for k := 1; k <= hunks; k++ {
		fmt.Fprintf(&p, "@@ -%d +%d @@\n-l%d\n+L\n", k*n, k*n, k*100)
	}
	fps, err := Parse([]byte(p.String()))
	if err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	_, err = Apply(fps[0], []byte(numbered(n)))
	elapsed := time.Since(begin)
	if err == nil || !strings.Contains(err.Error(), "gave up looking for where it applies") {
		t.Errorf("error %v, want the search to give up", err)
	}
	if elapsed > 10*time.Second {
		t.Errorf("Apply took %v", elapsed)
	}
	t.Logf("%v after %v", err, elapsed)
}

// TestApplyManyHunks checks that hunks that apply where their headers say
// cost little, even many of them in a big file.
func TestApplyManyHunks(t *testing.T) {
	const n = 100_000
	old := numbered(n)
	var p strings.Builder
	p.WriteString("--- a/f\n+++ b/f\n")
	want := strings.Builder{}
	for i := 1; i <= n; i++ {
		if i%4 == 2 {
			fmt.Fprintf(&p, "@@ -%d,3 +%d,3 @@\n l%d\n-l%d\n+L%d\n l%d\n", i-1, i-1, i-1, i, i, i+1)
			fmt.Fprintf(&want, "L%d\n", i)
		} else {
			fmt.Fprintf(&want, "l%d\n", i)
		}
	}
	fps, err := Parse([]byte(p.String()))
	if err != nil {
		t.Fatal(err)
	}
	got, err := Apply(fps[0], []byte(old))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want.String() {
		t.Error("wrong result")
	}
}
