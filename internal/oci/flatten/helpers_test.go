package flatten

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// ent is one entry of a test layer. In names and targets, "$OUT" stands for
// the absolute path of the canary directory outside root.
type ent struct {
	typ      byte
	name     string
	link     string
	body     string
	mode     int64
	size     int64 // claimed size, when not len(body)
	short    bool  // the stream ends after this entry's (short) body
	uid, gid int
	mtime    time.Time
	pax      map[string]string
	devmajor int64
}

func reg(name, body string) ent { return ent{typ: tar.TypeReg, name: name, body: body, mode: 0o644} }
func dir(name string) ent       { return ent{typ: tar.TypeDir, name: name, mode: 0o755} }
func sym(name, target string) ent {
	return ent{typ: tar.TypeSymlink, name: name, link: target, mode: 0o777}
}
func hard(name, target string) ent {
	return ent{typ: tar.TypeLink, name: name, link: target, mode: 0o644}
}
func wh(name string) ent { return ent{typ: tar.TypeReg, name: name, mode: 0o600} }

// tarOf builds a layer; out replaces "$OUT".
func tarOf(tb testing.TB, out string, ents ...ent) []byte {
	tb.Helper()
	b, err := buildTar(out, false, ents...)
	if err != nil {
		tb.Fatalf("building layer: %v", err)
	}
	return b
}

// buildTar builds a layer; with lax, entries the tar writer refuses are
// left out.
func buildTar(out string, lax bool, ents ...ent) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		size := int64(len(e.body))
		if e.size != 0 {
			size = e.size
		}
		if e.typ != tar.TypeReg {
			size = 0
		}
		hdr := &tar.Header{
			Typeflag:   e.typ,
			Name:       strings.ReplaceAll(e.name, "$OUT", out),
			Linkname:   strings.ReplaceAll(e.link, "$OUT", out),
			Size:       size,
			Mode:       e.mode,
			Uid:        e.uid,
			Gid:        e.gid,
			ModTime:    e.mtime,
			PAXRecords: e.pax,
			Devmajor:   e.devmajor,
			Format:     tar.FormatPAX,
		}
		if err := tw.WriteHeader(hdr); err != nil {
			if lax {
				continue
			}
			return nil, fmt.Errorf("%s: %w", quote(e.name), err)
		}
		if size > 0 && e.body != "" {
			if _, err := tw.Write([]byte(e.body)); err != nil && !e.short {
				return nil, fmt.Errorf("%s: %w", quote(e.name), err)
			}
		}
		if e.short {
			return buf.Bytes(), nil
		}
	}
	if err := tw.Close(); err != nil && !lax {
		return nil, err
	}
	return buf.Bytes(), nil
}

// sandbox is a temporary directory holding root and, beside it, a canary
// directory that no layer may touch.
type sandbox struct {
	tmp, root, out string
	before         map[string]string
}

func newSandbox(tb testing.TB) *sandbox {
	tb.Helper()
	tmp := tb.TempDir()
	s := &sandbox{tmp: tmp, root: filepath.Join(tmp, "root"), out: filepath.Join(tmp, "outside")}
	for _, d := range []string{s.root, s.out, filepath.Join(s.out, "dir")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	for _, f := range []string{filepath.Join(s.out, "canary"), filepath.Join(s.out, "dir", "f")} {
		if err := os.WriteFile(f, []byte("canary"), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	if err := os.Symlink("canary", filepath.Join(s.out, "link")); err != nil {
		tb.Fatal(err)
	}
	s.before = s.outside(tb)
	return s
}

// outside describes everything in the sandbox but root (and root2, which
// the fuzzer uses).
func (s *sandbox) outside(tb testing.TB) map[string]string {
	tb.Helper()
	return describe(tb, s.tmp, true, "root", "root2")
}

// checkOutside fails unless everything outside root is as it was, and no
// file left on the host by a broken confinement exists.
func (s *sandbox) checkOutside(tb testing.TB) {
	tb.Helper()
	after := s.outside(tb)
	if !maps(s.before, after) {
		tb.Errorf("outside root changed:\nbefore %v\nafter  %v", s.before, after)
	}
	if _, err := os.Lstat(hostCanary); err == nil {
		tb.Errorf("%s exists on the host", hostCanary)
		os.Remove(hostCanary)
	}
}

// hostCanary is a host path that test layers aim at through symlinks.
const hostCanary = "/etc/pyro-flatten-test-canary"

func maps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || v != w {
			return false
		}
	}
	return true
}

// describe lists every entry below dir but those named in except, never following symlinks: type,
// mode, owner, and content digest or target; with times, the exact times of
// every entry too.
func describe(tb testing.TB, dir string, times bool, except ...string) map[string]string {
	tb.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		if slices.Contains(except, rel) {
			return fs.SkipDir
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		desc := fmt.Sprintf("%o %d:%d nlink=%d", st.Mode, st.Uid, st.Gid, st.Nlink)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			b, err := os.ReadFile(p)
			if errors.Is(err, fs.ErrPermission) {
				b, err = []byte("unreadable"), nil // mode 0 when not root
			}
			if err != nil {
				return err
			}
			desc += fmt.Sprintf(" %x mtime=%d", sha256.Sum256(b), st.Mtim.Sec)
		case unix.S_IFLNK:
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			desc += " -> " + t
		case unix.S_IFDIR:
		default:
			desc += " special"
		}
		if times {
			desc += fmt.Sprintf(" mtime=%d.%d ctime=%d.%d", st.Mtim.Sec, st.Mtim.Nsec, st.Ctim.Sec, st.Ctim.Nsec)
		}
		m[filepath.ToSlash(rel)] = desc
		return nil
	})
	if err != nil {
		tb.Fatalf("describing %s: %v", dir, err)
	}
	return m
}

func openFDs(tb testing.TB) []string {
	tb.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		tb.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		t, _ := os.Readlink("/proc/self/fd/" + e.Name())
		names = append(names, e.Name()+"="+t)
	}
	slices.Sort(names)
	return names
}

func lstat(tb testing.TB, p string) *unix.Stat_t {
	tb.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		tb.Fatalf("lstat %s: %v", p, err)
	}
	return &st
}

func wantFile(tb testing.TB, root, rel, body string) {
	tb.Helper()
	p := filepath.Join(root, rel)
	if st := lstat(tb, p); st.Mode&unix.S_IFMT != unix.S_IFREG {
		tb.Fatalf("%s: mode %o, want a regular file", rel, st.Mode)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		tb.Fatal(err)
	}
	if string(b) != body {
		tb.Fatalf("%s: %q, want %q", rel, b, body)
	}
}

func wantDir(tb testing.TB, root, rel string) {
	tb.Helper()
	if st := lstat(tb, filepath.Join(root, rel)); st.Mode&unix.S_IFMT != unix.S_IFDIR {
		tb.Fatalf("%s: mode %o, want a directory", rel, st.Mode)
	}
}

func wantSymlink(tb testing.TB, root, rel, target string) {
	tb.Helper()
	t, err := os.Readlink(filepath.Join(root, rel))
	if err != nil {
		tb.Fatalf("%s: %v, want a symlink", rel, err)
	}
	if t != target {
		tb.Fatalf("%s -> %s, want -> %s", rel, t, target)
	}
}

func wantAbsent(tb testing.TB, root string, rels ...string) {
	tb.Helper()
	for _, rel := range rels {
		if _, err := os.Lstat(filepath.Join(root, rel)); err == nil {
			tb.Fatalf("%s exists, want it absent", rel)
		}
	}
}

// wantOnly fails unless root holds exactly these names.
func wantOnly(tb testing.TB, root string, rels ...string) {
	tb.Helper()
	var got []string
	for k := range describe(tb, root, false) {
		got = append(got, k)
	}
	slices.Sort(got)
	slices.Sort(rels)
	if !slices.Equal(got, rels) {
		tb.Fatalf("root holds %q, want %q", got, rels)
	}
}

// openat2Works says whether this kernel has openat2(RESOLVE_IN_ROOT).
func openat2Works() bool {
	fd, err := unix.Openat2(unix.AT_FDCWD, ".", &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: resolveFlags})
	if err != nil {
		return false
	}
	unix.Close(fd)
	return true
}

// resolvers are the two ways paths are resolved; every test runs with both.
func resolvers(t *testing.T, f func(t *testing.T, noOpenat2 bool)) {
	t.Run("openat2", func(t *testing.T) {
		if !openat2Works() {
			t.Skip("openat2 is not available")
		}
		f(t, false)
	})
	t.Run("walk", func(t *testing.T) { f(t, true) })
}
