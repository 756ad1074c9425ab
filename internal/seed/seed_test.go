package seed

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pyro-sandbox/pyro/internal/errs"
)

var mtime = time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)

// entry is one entry of a tar stream as the guest will see it.
type entry struct {
	Name string
	Type byte
	Mode int64
	Link string
	Body string
}

func (e entry) String() string {
	return fmt.Sprintf("{%q %q %#o %q %q}", e.Name, e.Type, e.Mode, e.Link, e.Body)
}

// readTar re-reads a produced stream, checking it is a well-formed tar
// that ends properly.
func readTar(t *testing.T, data []byte) []entry {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(data))
	var out []entry
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("the produced tar does not re-read: %v", err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("the produced tar does not re-read: %v", err)
		}
		e := entry{Name: h.Name, Type: h.Typeflag, Mode: h.Mode, Link: h.Linkname, Body: string(body)}
		if h.Typeflag == tar.TypeSymlink {
			e.Mode = 0 // a symlink's mode means nothing
		}
		out = append(out, e)
	}
}

func checkEntries(t *testing.T, got, want []entry) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("entries:\n got %v\nwant %v", got, want)
	}
}

// seedTar opens the seed at p and writes it, returning the entries.
func seedTar(t *testing.T, p string, lim Limits) ([]entry, *Source, Stats) {
	t.Helper()
	src, err := Open(context.Background(), p, lim)
	if err != nil {
		t.Fatalf("Open(%s): %v", p, err)
	}
	var buf bytes.Buffer
	st, err := src.WriteTar(context.Background(), &buf, lim)
	if err != nil {
		t.Fatalf("WriteTar: %v", err)
	}
	if st != src.Stats {
		t.Errorf("WriteTar counted %+v, Open %+v", st, src.Stats)
	}
	return readTar(t, buf.Bytes()), src, st
}

func write(t *testing.T, p, body string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // past the umask
		t.Fatal(err)
	}
}

func mkdir(t *testing.T, p string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(p, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

func isInvalid(t *testing.T, err error, mentions ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("accepted; want a refusal mentioning %q", mentions)
	}
	if k := errs.KindOf(err); k != errs.Invalid {
		t.Errorf("error %q has kind %s, want %s", err, k, errs.Invalid)
	}
	for _, m := range mentions {
		if !strings.Contains(err.Error(), m) {
			t.Errorf("error %q does not mention %q", err, m)
		}
	}
}

func TestDirectory(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.txt"), "hello\n", 0o644)
	write(t, filepath.Join(dir, "bin", "run.sh"), "#!/bin/sh\necho hi\n", 0o755)
	write(t, filepath.Join(dir, "bin", "suid"), "x", os.ModeSetuid|0o750)
	mkdir(t, filepath.Join(dir, "empty"), 0o750)
	if err := os.Symlink("a.txt", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	// Symlinks are sent as links and never followed, wherever they point.
	if err := os.Symlink("../../../etc/passwd", filepath.Join(dir, "bin", "away")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(dir, "a.txt"), filepath.Join(dir, "hard")); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(dir, "bin"), 0o755)
	if err := os.Chtimes(filepath.Join(dir, "a.txt"), mtime, mtime); err != nil {
		t.Fatal(err)
	}

	got, src, st := seedTar(t, dir, DefaultLimits)
	if src.Mode != ModeDirectory {
		t.Errorf("Mode = %q, want %q", src.Mode, ModeDirectory)
	}
	checkEntries(t, got, []entry{
		{"a.txt", tar.TypeReg, 0o644, "", "hello\n"},
		{"bin/", tar.TypeDir, 0o755, "", ""},
		{"bin/away", tar.TypeSymlink, 0, "../../../etc/passwd", ""},
		{"bin/run.sh", tar.TypeReg, 0o755, "", "#!/bin/sh\necho hi\n"},
		{"bin/suid", tar.TypeReg, 0o4750, "", "x"},
		{"empty/", tar.TypeDir, 0o750, "", ""},
		// A hard-linked file of a directory is sent as a second file.
		{"hard", tar.TypeReg, 0o644, "", "hello\n"},
		{"link", tar.TypeSymlink, 0, "a.txt", ""},
	})
	if want := (Stats{Files: 8, Bytes: 6 + 18 + 1 + 6}); st != want {
		t.Errorf("Stats = %+v, want %+v", st, want)
	}

	// Times are kept.
	var buf bytes.Buffer
	if _, err := src.WriteTar(context.Background(), &buf, DefaultLimits); err != nil {
		t.Fatal(err)
	}
	h, err := tar.NewReader(&buf).Next()
	if err != nil {
		t.Fatal(err)
	}
	if !h.ModTime.Equal(mtime) {
		t.Errorf("a.txt has mtime %v, want %v", h.ModTime, mtime)
	}
}

func TestEmptyDirectory(t *testing.T) {
	got, _, st := seedTar(t, t.TempDir(), DefaultLimits)
	if len(got) != 0 || st != (Stats{}) {
		t.Errorf("an empty directory gave %v, %+v; want nothing", got, st)
	}
}

// A seed path that is a symlink to a directory seeds that directory.
func TestDirectoryThroughSymlink(t *testing.T) {
	base := t.TempDir()
	write(t, filepath.Join(base, "real", "f"), "data", 0o644)
	if err := os.Symlink("real", filepath.Join(base, "alias")); err != nil {
		t.Fatal(err)
	}
	got, src, _ := seedTar(t, filepath.Join(base, "alias"), DefaultLimits)
	if src.Mode != ModeDirectory {
		t.Errorf("Mode = %q, want %q", src.Mode, ModeDirectory)
	}
	checkEntries(t, got, []entry{{"f", tar.TypeReg, 0o644, "", "data"}})
}

func TestDirectoryRefusesSpecialFiles(t *testing.T) {
	for _, tc := range []struct {
		name string
		make func(p string) error
		says string
	}{
		{"fifo", func(p string) error { return unix.Mkfifo(p, 0o600) }, "FIFO"},
		{"socket", func(p string) error { return unix.Mknod(p, unix.S_IFSOCK|0o600, 0) }, "socket"},
		{"device", func(p string) error { return unix.Mknod(p, unix.S_IFCHR|0o600, int(unix.Mkdev(1, 3))) }, "device"},
		{"block-device", func(p string) error { return unix.Mknod(p, unix.S_IFBLK|0o600, int(unix.Mkdev(7, 0))) }, "device"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			write(t, filepath.Join(dir, "a"), "ok", 0o644)
			p := filepath.Join(dir, "sub", tc.name)
			mkdir(t, filepath.Dir(p), 0o755)
			if err := tc.make(p); err != nil {
				if errors.Is(err, syscall.EPERM) {
					t.Skipf("cannot make a %s here: %v", tc.name, err)
				}
				t.Fatal(err)
			}
			_, err := Open(context.Background(), dir, DefaultLimits)
			isInvalid(t, err, `"sub/`+tc.name+`"`, tc.says)
		})
	}
}

// tarEntry is an entry of an archive a test builds.
type tarEntry struct {
	h    tar.Header
	body string
}

func reg(name, body string, mode int64) tarEntry {
	return tarEntry{tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: mode, Size: int64(len(body)), ModTime: mtime}, body}
}

func dir(name string, mode int64) tarEntry {
	return tarEntry{h: tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: mode, ModTime: mtime}}
}

func symlink(name, target string) tarEntry {
	return tarEntry{h: tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: target, Mode: 0o777, ModTime: mtime}}
}

func hardlink(name, target string) tarEntry {
	return tarEntry{h: tar.Header{Name: name, Typeflag: tar.TypeLink, Linkname: target, Mode: 0o644, ModTime: mtime}}
}

func special(name string, typ byte) tarEntry {
	return tarEntry{h: tar.Header{Name: name, Typeflag: typ, Mode: 0o600, Devmajor: 1, Devminor: 3, ModTime: mtime}}
}

func tarBytes(t *testing.T, entries []tarEntry) []byte {
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

func gzipBytes(t *testing.T, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(data)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// archive writes entries as an archive named name (compressed when the
// name says so) and returns its path.
func archive(t *testing.T, name string, entries []tarEntry) string {
	t.Helper()
	data := tarBytes(t, entries)
	if l := strings.ToLower(name); strings.HasSuffix(l, ".gz") || strings.HasSuffix(l, ".tgz") {
		data = gzipBytes(t, data)
	}
	return writeArchive(t, name, data)
}

func writeArchive(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestArchives(t *testing.T) {
	entries := []tarEntry{
		{h: tar.Header{Typeflag: tar.TypeXGlobalHeader, PAXRecords: map[string]string{"comment": "made by git archive"}}},
		dir("./", 0o755),
		dir("./src/", 0o750),
		reg("./src/main.go", "package main\n", 0o644),
		reg("src/run", "#!/bin/sh\n", 0o755),
		reg("suid", "s", 0o4755),
		dir("empty", 0o700),
		symlink("link", "src/main.go"),
		symlink("abs-link", "/etc/passwd"), // sent as is; never followed
		hardlink("hl", "./src/main.go"),
		// A later entry replaces an earlier one of the same name.
		reg("again", "first", 0o644),
		reg("again", "second", 0o600),
	}
	want := []entry{
		{"src/", tar.TypeDir, 0o750, "", ""},
		{"src/main.go", tar.TypeReg, 0o644, "", "package main\n"},
		{"src/run", tar.TypeReg, 0o755, "", "#!/bin/sh\n"},
		{"suid", tar.TypeReg, 0o4755, "", "s"},
		{"empty/", tar.TypeDir, 0o700, "", ""},
		{"link", tar.TypeSymlink, 0, "src/main.go", ""},
		{"abs-link", tar.TypeSymlink, 0, "/etc/passwd", ""},
		{"hl", tar.TypeLink, 0o644, "src/main.go", ""},
		{"again", tar.TypeReg, 0o644, "", "first"},
		{"again", tar.TypeReg, 0o600, "", "second"},
	}
	for _, name := range []string{"seed.tar", "seed.tar.gz", "seed.tgz", "SEED.TAR.GZ"} {
		t.Run(name, func(t *testing.T) {
			got, src, st := seedTar(t, archive(t, name, entries), DefaultLimits)
			if src.Mode != ModeTar {
				t.Errorf("Mode = %q, want %q", src.Mode, ModeTar)
			}
			checkEntries(t, got, want)
			if wantSt := (Stats{Files: 10, Bytes: 13 + 10 + 1 + 5 + 6}); st != wantSt {
				t.Errorf("Stats = %+v, want %+v", st, wantSt)
			}
		})
	}
}

// Nothing of a refused seed is sent: Open checks it all first, and names
// the entry at fault.
func TestArchiveRefusals(t *testing.T) {
	for _, tc := range []struct {
		name    string
		entries []tarEntry
		entry   string // the entry the refusal names
		says    string
	}{
		{"parent", []tarEntry{reg("ok", "", 0o644), reg("../x", "evil", 0o644)}, "../x", ".."},
		{"parent inside", []tarEntry{reg("a/../../x", "evil", 0o644)}, "a/../../x", ".."},
		{"parent dir", []tarEntry{dir("../up/", 0o755)}, "../up/", ".."},
		{"absolute", []tarEntry{reg("/abs", "evil", 0o644)}, "/abs", "absolute"},
		{"absolute dir", []tarEntry{dir("/etc/", 0o755)}, "/etc/", "absolute"},
		{"char device", []tarEntry{special("dev/null", tar.TypeChar)}, "dev/null", "device"},
		{"block device", []tarEntry{special("sda", tar.TypeBlock)}, "sda", "device"},
		{"fifo", []tarEntry{special("pipe", tar.TypeFifo)}, "pipe", "FIFO"},
		{"unsupported type", []tarEntry{special("cont", tar.TypeCont)}, "cont", "unsupported"},
		{"file through a symlink", []tarEntry{symlink("etc", "/etc"), reg("etc/passwd", "root::0:0::/:/bin/sh\n", 0o644)}, "etc/passwd", `"etc"`},
		{"file deep through a symlink", []tarEntry{dir("d", 0o755), symlink("d/up", "../.."), reg("d/up/x/y", "", 0o644)}, "d/up/x/y", `"d/up"`},
		{"dir through a symlink", []tarEntry{symlink("s", "."), dir("s/sub", 0o755)}, "s/sub", `"s"`},
		{"symlink through a symlink", []tarEntry{symlink("s", "/"), symlink("s/l", "x")}, "s/l", `"s"`},
		{"hard link to a later file", []tarEntry{hardlink("hl", "later"), reg("later", "x", 0o644)}, "hl", "not an earlier file"},
		{"hard link to nothing", []tarEntry{hardlink("hl", "nope")}, "hl", "not an earlier file"},
		{"hard link outside", []tarEntry{hardlink("hl", "../etc/passwd")}, "hl", "not an earlier file"},
		{"hard link absolute", []tarEntry{hardlink("hl", "/etc/passwd")}, "hl", "not an earlier file"},
		{"hard link to a directory", []tarEntry{dir("d", 0o755), hardlink("hl", "d")}, "hl", "not an earlier file"},
		{"hard link to a symlink", []tarEntry{symlink("s", "/etc/passwd"), hardlink("hl", "s")}, "hl", "not an earlier file"},
		{"hard link to a replaced file", []tarEntry{reg("f", "x", 0o644), symlink("f", "/etc/shadow"), hardlink("hl", "f")}, "hl", "not an earlier file"},
		{"hard link through a symlink", []tarEntry{dir("d", 0o755), reg("d/f", "x", 0o644), symlink("d", "/"), hardlink("hl", "d/f")}, "hl", `"d/f"`},
		{"hard link to itself", []tarEntry{hardlink("hl", "hl")}, "hl", "not an earlier file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, err := Open(context.Background(), archive(t, "seed.tar", tc.entries), DefaultLimits)
			if src != nil {
				t.Errorf("Open returned a source with its error")
			}
			isInvalid(t, err, fmt.Sprintf("%q", tc.entry), tc.says)
			if hint := errs.HintOf(err); hint == "" {
				t.Errorf("refusal %q has no hint", err)
			}
		})
	}
}

func TestOpenRefusesWhatIsNotASeed(t *testing.T) {
	base := t.TempDir()
	zip := writeArchive(t, "seed.zip", tarBytes(t, []tarEntry{reg("a", "b", 0o644)}))
	noExt := writeArchive(t, "seed", tarBytes(t, []tarEntry{reg("a", "b", 0o644)}))
	fifo := filepath.Join(base, "pipe.tar")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path, says string
	}{
		{"zip", zip, "seed.zip"},
		{"no extension", noExt, "neither a directory nor"},
		{"missing", filepath.Join(base, "nope.tar"), "nope.tar"},
		{"fifo named .tar", fifo, "not a regular file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Open(context.Background(), tc.path, DefaultLimits)
			isInvalid(t, err, tc.says)
		})
	}
}

func TestDamagedArchives(t *testing.T) {
	good := tarBytes(t, []tarEntry{reg("a", strings.Repeat("a", 3000), 0o644), reg("b", strings.Repeat("b", 3000), 0o644)})
	gz := gzipBytes(t, good)
	corrupt := append([]byte(nil), gz...)
	for i := 20; i < len(corrupt)-20; i++ {
		corrupt[i] ^= 0x5a
	}
	for _, tc := range []struct {
		name, file string
		data       []byte
	}{
		{"not gzip", "seed.tgz", []byte("this is not gzip data at all")},
		{"gzip of garbage", "seed.tar.gz", gzipBytes(t, bytes.Repeat([]byte("garbage!"), 200))},
		{"corrupt deflate", "seed.tar.gz", corrupt},
		{"truncated gzip", "seed.tar.gz", gz[:len(gz)/2]},
		{"truncated in a header", "seed.tar", good[:512+3584+100]},
		{"truncated in data", "seed.tar", good[:512+1000]},
		{"plain tar named .tgz", "seed.tgz", good},
		{"garbage tar", "seed.tar", bytes.Repeat([]byte{0xff}, 2048)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Open(context.Background(), writeArchive(t, tc.file, tc.data), DefaultLimits)
			isInvalid(t, err, tc.file)
		})
	}
}

func TestLimits(t *testing.T) {
	d := t.TempDir()
	write(t, filepath.Join(d, "a"), "0123456789", 0o644)
	write(t, filepath.Join(d, "sub", "b"), "0123456789", 0o644)
	// Three entries (a, sub/, sub/b) of 20 bytes in all.
	tarPath := archive(t, "seed.tar", []tarEntry{reg("a", "0123456789", 0o644), dir("sub", 0o755), reg("sub/b", "0123456789", 0o644)})
	for _, p := range []string{d, tarPath} {
		for _, tc := range []struct {
			lim  Limits
			says string // "" when accepted
		}{
			{Limits{MaxFiles: 3, MaxBytes: 20}, ""},
			{Limits{MaxFiles: 2, MaxBytes: 20}, "more than 2 entries"},
			{Limits{MaxFiles: 3, MaxBytes: 19}, "more than 19 bytes"},
			{Limits{MaxFiles: 0, MaxBytes: 100}, "more than 0 entries"},
		} {
			src, err := Open(context.Background(), p, tc.lim)
			if tc.says == "" {
				if err != nil {
					t.Errorf("%s with %+v: %v", filepath.Base(p), tc.lim, err)
				} else if src.Stats != (Stats{Files: 3, Bytes: 20}) {
					t.Errorf("%s: Stats = %+v, want 3 files, 20 bytes", filepath.Base(p), src.Stats)
				}
				continue
			}
			isInvalid(t, err, tc.says)
		}
	}

	// WriteTar enforces its own limits too (the seed may have grown).
	src, err := Open(context.Background(), d, DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(d, "c"), "more", 0o644)
	_, err = src.WriteTar(context.Background(), io.Discard, Limits{MaxFiles: 3, MaxBytes: 1 << 20})
	isInvalid(t, err, "more than 3 entries")
}

// A header may claim a large size; it counts against the limit before
// any data is read.
func TestLimitCountsClaimedSize(t *testing.T) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "big", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1 << 40})
	tw.Write([]byte("only this"))
	p := writeArchive(t, "seed.tar", buf.Bytes())
	_, err := Open(context.Background(), p, Limits{MaxFiles: 10, MaxBytes: 1 << 30})
	isInvalid(t, err, "bytes")
}

func TestCancel(t *testing.T) {
	d := t.TempDir()
	for i := range 50 {
		write(t, filepath.Join(d, fmt.Sprintf("f%02d", i)), "x", 0o644)
	}
	tarPath := archive(t, "seed.tgz", []tarEntry{reg("a", "x", 0o644), reg("b", "y", 0o644)})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, p := range []string{d, tarPath} {
		if _, err := Open(ctx, p, DefaultLimits); !errors.Is(err, context.Canceled) {
			t.Errorf("Open(%s) with a cancelled context = %v, want context.Canceled", filepath.Base(p), err)
		}
		src, err := Open(context.Background(), p, DefaultLimits)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if _, err := src.WriteTar(ctx, &buf, DefaultLimits); !errors.Is(err, context.Canceled) {
			t.Errorf("WriteTar(%s) with a cancelled context = %v, want context.Canceled", filepath.Base(p), err)
		}
	}
}

// Cancelling in the middle of a walk stops it.
func TestCancelMidway(t *testing.T) {
	d := t.TempDir()
	for i := range 20 {
		write(t, filepath.Join(d, fmt.Sprintf("f%02d", i)), strings.Repeat("x", 100), 0o644)
	}
	src, err := Open(context.Background(), d, DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := &cancelAfter{n: 3 * 512, cancel: cancel}
	st, err := src.WriteTar(ctx, w, DefaultLimits)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("WriteTar = %v, want context.Canceled", err)
	}
	if st.Files >= 20 {
		t.Errorf("WriteTar went through all %d files after the cancel", st.Files)
	}
}

type cancelAfter struct {
	n      int
	cancel func()
}

func (w *cancelAfter) Write(p []byte) (int, error) {
	w.n -= len(p)
	if w.n <= 0 {
		w.cancel()
	}
	return len(p), nil
}
