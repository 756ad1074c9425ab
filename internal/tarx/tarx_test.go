package tarx

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

var (
	mtime    = time.Date(2023, 4, 5, 6, 7, 8, 0, time.UTC)
	dirMtime = time.Date(2022, 1, 2, 3, 4, 5, 0, time.UTC)
	lim      = Limits{MaxBytes: 1 << 20, MaxFiles: 1000}
)

type entry struct {
	h    tar.Header
	body string
}

func reg(name, body string, mode int64) entry {
	return entry{tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: mode, Size: int64(len(body)), ModTime: mtime}, body}
}

func dir(name string, mode int64) entry {
	return entry{h: tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: mode, ModTime: dirMtime}}
}

func symlink(name, target string) entry {
	return entry{h: tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: target, Mode: 0o777, ModTime: mtime}}
}

func hardlink(name, target string) entry {
	return entry{h: tar.Header{Name: name, Typeflag: tar.TypeLink, Linkname: target, ModTime: mtime}}
}

func special(name string, typ byte) entry {
	return entry{h: tar.Header{Name: name, Typeflag: typ, Mode: 0o666, Devmajor: 1, Devminor: 3, ModTime: mtime}}
}

func tarOf(t *testing.T, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.h
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("writing %q: %v", h.Name, err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// sandbox is a destination directory with a canary directory beside it
// that no extraction may touch.
type sandbox struct {
	base, dest, canary string
	root               *os.Root
}

func newSandbox(t *testing.T) *sandbox {
	t.Helper()
	base := t.TempDir()
	s := &sandbox{base: base, dest: filepath.Join(base, "dest"), canary: filepath.Join(base, "canary")}
	for _, d := range []string{s.dest, s.canary} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(s.canary, "keep"), []byte("canary"), 0o644); err != nil {
		t.Fatal(err)
	}
	root, err := os.OpenRoot(s.dest)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	s.root = root
	return s
}

func (s *sandbox) extract(t *testing.T, data []byte, lim Limits) (Stats, error) {
	t.Helper()
	return Extract(context.Background(), s.root, bytes.NewReader(data), lim)
}

// untouched checks that nothing outside dest changed.
func (s *sandbox) untouched(t *testing.T) {
	t.Helper()
	for _, d := range []string{s.base, s.canary} {
		entries, err := os.ReadDir(d)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		want := map[string]string{s.base: "canary dest", s.canary: "keep"}[d]
		if got := strings.Join(names, " "); got != want {
			t.Errorf("%s holds %q, want %q: the extraction wrote outside its destination", d, got, want)
		}
	}
	data, err := os.ReadFile(filepath.Join(s.canary, "keep"))
	if err != nil || string(data) != "canary" {
		t.Errorf("canary file changed: %q, %v", data, err)
	}
	fi, err := os.Lstat(filepath.Join(s.canary, "keep"))
	if err != nil || fi.Mode() != 0o644 {
		t.Errorf("canary file mode changed: %v, %v", fi.Mode(), err)
	}
}

// tree lists what is under dest: path, type, mode and content or target.
func (s *sandbox) tree(t *testing.T) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(s.dest, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(s.dest, p)
		if rel == "." {
			return nil
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		line := rel + " " + fi.Mode().String()
		switch {
		case fi.Mode().IsRegular():
			data, _ := os.ReadFile(p)
			line += " " + string(data)
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			line += " -> " + target
		}
		out = append(out, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

func TestExtract(t *testing.T) {
	s := newSandbox(t)
	data := tarOf(t,
		dir("./", 0o755),
		dir("./src/", 0o750),
		reg("./src/main.go", "package main\n", 0o644),
		reg("src/run.sh", "#!/bin/sh\n", 0o755),
		reg("suid", "s", 0o4755),
		reg("sgid", "g", 0o2711),
		dir("sticky", 0o1777),
		reg("deep/er/file", "auto parents", 0o600),
		symlink("link", "src/main.go"),
		symlink("src/up", "../suid"),
		symlink("dangling", "nowhere"),
		hardlink("hl", "./src/main.go"),
		// A later entry replaces an earlier one of the same name.
		reg("again", "first", 0o644),
		reg("again", "second", 0o600),
		symlink("relink", "a"),
		symlink("relink", "b"),
	)
	st, err := s.extract(t, data, lim)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"again -rw------- second",
		"dangling Lrwxrwxrwx -> nowhere",
		"deep drwxr-xr-x",
		"deep/er drwxr-xr-x",
		"deep/er/file -rw------- auto parents",
		"hl -rw-r--r-- package main\n",
		"link Lrwxrwxrwx -> src/main.go",
		"relink Lrwxrwxrwx -> b",
		"sgid grwx--x--x g",
		"src drwxr-x---",
		"src/main.go -rw-r--r-- package main\n",
		"src/run.sh -rwxr-xr-x #!/bin/sh\n",
		"src/up Lrwxrwxrwx -> ../suid",
		"sticky dtrwxrwxrwx",
		"suid urwxr-xr-x s",
	}
	if got := s.tree(t); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("extracted tree:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if want := (Stats{Files: 15, Bytes: 13 + 10 + 1 + 1 + 12 + 5 + 6}); st != want {
		t.Errorf("Stats = %+v, want %+v", st, want)
	}

	// The hard link shares the file.
	a, _ := os.Stat(filepath.Join(s.dest, "hl"))
	b, _ := os.Stat(filepath.Join(s.dest, "src", "main.go"))
	if !os.SameFile(a, b) {
		t.Errorf("hl is a copy, not a hard link of src/main.go")
	}
	// Times: files and directories (after their content was written).
	for name, want := range map[string]time.Time{"src/main.go": mtime, "suid": mtime, "src": dirMtime, "sticky": dirMtime} {
		fi, err := os.Stat(filepath.Join(s.dest, name))
		if err != nil {
			t.Fatal(err)
		}
		if !fi.ModTime().Equal(want) {
			t.Errorf("%s has mtime %v, want %v", name, fi.ModTime().UTC(), want)
		}
	}
	s.untouched(t)
}

// A read-only directory is filled before it is made read-only (an
// exported Go module cache is made of such directories).
func TestExtractReadOnlyDirectory(t *testing.T) {
	s := newSandbox(t)
	_, err := s.extract(t, tarOf(t,
		dir("mod/", 0o555),
		dir("mod/pkg/", 0o555),
		reg("mod/pkg/go.mod", "module x\n", 0o444),
	), lim)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"mod dr-xr-xr-x", "mod/pkg dr-xr-xr-x", "mod/pkg/go.mod -r--r--r-- module x\n"}
	if got := s.tree(t); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("extracted tree %q, want %q", got, want)
	}
	// Let the test's cleanup remove it.
	filepath.WalkDir(s.dest, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o755)
		}
		return nil
	})
}

func TestExtractRefusals(t *testing.T) {
	for _, tc := range []struct {
		name    string
		entries []entry
		lim     Limits
		says    string // in the error
	}{
		{"parent", []entry{reg("../x", "evil", 0o644)}, lim, "../x"},
		{"parent inside a name", []entry{dir("a", 0o755), reg("a/../../x", "evil", 0o644)}, lim, "a/../../x"},
		{"parent dir", []entry{dir("../up/", 0o755)}, lim, "../up"},
		{"absolute", []entry{reg("/abs", "evil", 0o644)}, lim, "/abs"},
		{"absolute into the canary", []entry{reg("/CANARY/keep", "evil", 0o644)}, lim, "keep"},
		{"char device", []entry{special("null", tar.TypeChar)}, lim, "device node"},
		{"block device", []entry{special("sda", tar.TypeBlock)}, lim, "device node"},
		{"fifo", []entry{special("pipe", tar.TypeFifo)}, lim, "FIFO"},
		{"symlink out, file through it", []entry{symlink("esc", "../canary"), reg("esc/keep", "evil", 0o644)}, lim, ""},
		{"symlink out, new file through it", []entry{symlink("esc", "../canary"), reg("esc/new", "evil", 0o644)}, lim, ""},
		{"absolute symlink, file through it", []entry{symlink("esc", "/CANARY"), reg("esc/new", "evil", 0o644)}, lim, ""},
		{"symlink out, dir through it", []entry{symlink("esc", "../canary"), dir("esc/sub", 0o755)}, lim, ""},
		{"symlink out, symlink through it", []entry{symlink("esc", "../canary"), symlink("esc/l", "x")}, lim, ""},
		{"symlink out, hard link through it", []entry{reg("f", "x", 0o644), symlink("esc", "../canary"), hardlink("esc/h", "f")}, lim, ""},
		{"symlink chain out", []entry{dir("d", 0o755), symlink("d/up", ".."), symlink("d/up2", "up/.."), reg("d/up2/new", "evil", 0o644)}, lim, ""},
		{"hard link outside", []entry{hardlink("h", "../canary/keep")}, lim, "outside"},
		{"hard link absolute", []entry{hardlink("h", "/CANARY/keep")}, lim, "outside"},
		{"hard link through a symlink out", []entry{symlink("esc", "../canary"), hardlink("h", "esc/keep")}, lim, ""},
		{"hard link to nothing", []entry{hardlink("h", "nope")}, lim, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSandbox(t)
			for i := range tc.entries {
				h := &tc.entries[i].h
				h.Name = strings.ReplaceAll(h.Name, "/CANARY", s.canary)
				h.Linkname = strings.ReplaceAll(h.Linkname, "/CANARY", s.canary)
			}
			_, err := s.extract(t, tarOf(t, tc.entries...), tc.lim)
			if err == nil {
				t.Errorf("accepted; tree:\n%s", strings.Join(s.tree(t), "\n"))
			} else if !strings.Contains(err.Error(), tc.says) {
				t.Errorf("error %q does not mention %q", err, tc.says)
			}
			s.untouched(t)
		})
	}
}

// Without ConfineSymlinks (in the guest), a symlink may point anywhere:
// it is only never followed out of the destination.
func TestExtractKeepsOutwardSymlinks(t *testing.T) {
	s := newSandbox(t)
	_, err := s.extract(t, tarOf(t, symlink("abs", "/etc/passwd"), symlink("up", "../canary/keep")), lim)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"abs Lrwxrwxrwx -> /etc/passwd", "up Lrwxrwxrwx -> ../canary/keep"}
	if got := s.tree(t); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("tree %q, want %q", got, want)
	}
	s.untouched(t)
}

func TestConfineSymlinks(t *testing.T) {
	confined := lim
	confined.ConfineSymlinks = true
	for _, tc := range []struct {
		name    string
		entries []entry
		ok      bool
	}{
		{"a -> b/c", []entry{symlink("a", "b/c")}, true},
		{"x/y -> ../z", []entry{dir("x", 0o755), symlink("x/y", "../z")}, true},
		{"deep climb that stays inside", []entry{symlink("a/b/c/l", "../../../top")}, true},
		{"to the tree's top", []entry{symlink("a/l", "..")}, true},
		{"to itself's dir", []entry{symlink("l", ".")}, true},
		{"through an inside symlink", []entry{dir("real", 0o755), symlink("alias", "real"), symlink("l", "alias/f")}, true},
		{"absolute", []entry{symlink("l", "/etc/passwd")}, false},
		{"absolute root", []entry{symlink("l", "/")}, false},
		{"empty target", []entry{symlink("l", "")}, false},
		{"climbs out", []entry{symlink("l", "../canary/keep")}, false},
		{"climbs out from below", []entry{symlink("x/y/l", "../../../canary")}, false},
		{"climbs out after going down", []entry{symlink("l", "a/../../canary")}, false},
		// Lexically inside, but not once the links are followed: "d" is
		// the tree's top, so "d/.." is its parent.
		{"climbs out through a symlink", []entry{symlink("d", "."), symlink("e", "d/..")}, false},
		{"climbs far out through symlinks", []entry{symlink("d", "."), symlink("p1", "d/.."), symlink("p2", "p1/.."), symlink("passwd", "p2/etc/passwd")}, false},
		{"placed through a symlink", []entry{symlink("d", "."), symlink("d/l", "../canary")}, false},
		// Harmless here (a/b/../x is a/x), but a target is only checked
		// from where its name says it is.
		{"placed through an inside symlink", []entry{dir("a", 0o755), dir("a/b", 0o755), symlink("s", "a/b"), symlink("s/l", "../x")}, false},
		{"hard link to a symlink elsewhere", []entry{symlink("x/l", "../z"), hardlink("h", "x/l")}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSandbox(t)
			_, err := s.extract(t, tarOf(t, tc.entries...), confined)
			if tc.ok && err != nil {
				t.Errorf("refused: %v", err)
			}
			if !tc.ok {
				if err == nil {
					t.Errorf("accepted; tree:\n%s", strings.Join(s.tree(t), "\n"))
				} else if !strings.Contains(err.Error(), "symlink") {
					t.Errorf("error %q does not say it is about a symlink", err)
				}
			}
			// Whatever was accepted resolves inside the tree.
			checkLinksInside(t, s.dest)
			s.untouched(t)
		})
	}
}

// checkLinksInside resolves every symlink under dest and checks that it
// does not lead out of it.
func checkLinksInside(t *testing.T, dest string) {
	t.Helper()
	realDest, err := filepath.EvalSymlinks(dest)
	if err != nil {
		t.Fatal(err)
	}
	filepath.WalkDir(dest, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.Type()&fs.ModeSymlink == 0 {
			return nil
		}
		target, _ := os.Readlink(p)
		// As the kernel would, following the links on the way.
		resolved, err := filepath.EvalSymlinks(p)
		if err != nil {
			// Dangling: resolve as far as the parent.
			parent, perr := filepath.EvalSymlinks(filepath.Dir(p))
			if perr != nil {
				return nil
			}
			resolved = filepath.Join(parent, target)
			if filepath.IsAbs(target) {
				resolved = target
			}
		}
		if resolved != realDest && !strings.HasPrefix(resolved, realDest+string(filepath.Separator)) {
			t.Errorf("symlink %s -> %s resolves to %s, outside %s", p, target, resolved, realDest)
		}
		return nil
	})
}

func TestLimits(t *testing.T) {
	ten := strings.Repeat("x", 10)
	three := tarOf(t, reg("a", ten, 0o644), dir("d", 0o755), reg("d/b", ten, 0o644))
	for _, tc := range []struct {
		name string
		lim  Limits
		says string // "" when accepted
	}{
		{"at the limits", Limits{MaxFiles: 3, MaxBytes: 20}, ""},
		{"one entry too many", Limits{MaxFiles: 2, MaxBytes: 20}, "more than 2 entries"},
		{"one byte too many", Limits{MaxFiles: 3, MaxBytes: 19}, "more than 19 bytes"},
		{"no bytes at all", Limits{MaxFiles: 3, MaxBytes: 0}, "more than 0 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSandbox(t)
			st, err := s.extract(t, three, tc.lim)
			if tc.says == "" {
				if err != nil {
					t.Fatal(err)
				}
				if st != (Stats{Files: 3, Bytes: 20}) {
					t.Errorf("Stats = %+v, want 3 files, 20 bytes", st)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Errorf("Extract = %v, want an error saying %q", err, tc.says)
			}
			s.untouched(t)
		})
	}
}

// A header may claim more than the limit or than the stream holds; the
// extraction stops at what is allowed and reports the short stream.
func TestLyingHeaders(t *testing.T) {
	claim := func(size int64, have string) []byte {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		tw.WriteHeader(&tar.Header{Name: "big", Typeflag: tar.TypeReg, Mode: 0o644, Size: size})
		tw.Write([]byte(have))
		return buf.Bytes() // no end of archive: the stream just stops
	}
	t.Run("more than the stream holds", func(t *testing.T) {
		s := newSandbox(t)
		_, err := s.extract(t, claim(1000, "only ten b"), lim)
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("Extract = %v, want io.ErrUnexpectedEOF", err)
		}
	})
	t.Run("more than the limit", func(t *testing.T) {
		s := newSandbox(t)
		// The stream is endless: the extraction must stop at the limit.
		r := io.MultiReader(bytes.NewReader(claim(1<<40, "")), endless{})
		st, err := Extract(context.Background(), s.root, r, Limits{MaxFiles: 10, MaxBytes: 1 << 16})
		if err == nil || !strings.Contains(err.Error(), "bytes") {
			t.Errorf("Extract = %v, want the byte limit", err)
		}
		if st.Bytes > 1<<16+1 {
			t.Errorf("read %d bytes past a limit of %d", st.Bytes, 1<<16)
		}
	})
	t.Run("truncated header", func(t *testing.T) {
		s := newSandbox(t)
		data := tarOf(t, reg("a", "x", 0o644), reg("b", "y", 0o644))
		_, err := s.extract(t, data[:512+512+100], lim)
		if err == nil {
			t.Errorf("a truncated header was accepted")
		}
	})
}

type endless struct{}

func (endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'z'
	}
	return len(p), nil
}

func TestCancel(t *testing.T) {
	s := newSandbox(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Extract(ctx, s.root, bytes.NewReader(tarOf(t, reg("a", "x", 0o644))), lim)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Extract with a cancelled context = %v, want context.Canceled", err)
	}
	if got := s.tree(t); len(got) != 0 {
		t.Errorf("a cancelled extraction wrote %q", got)
	}
}

// An entry of a file over an existing one (a sync push) replaces it,
// also when the old one was a symlink: the new content never goes through
// it.
func TestExtractOverExisting(t *testing.T) {
	s := newSandbox(t)
	if _, err := s.extract(t, tarOf(t, symlink("f", "../canary/keep"), reg("g", "old", 0o644)), lim); err != nil {
		t.Fatal(err)
	}
	if _, err := s.extract(t, tarOf(t, reg("f", "new", 0o644), reg("g", "new g", 0o600)), lim); err != nil {
		t.Fatal(err)
	}
	want := []string{"f -rw-r--r-- new", "g -rw------- new g"}
	if got := s.tree(t); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("tree %q, want %q", got, want)
	}
	s.untouched(t)
}
