package initramfs

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/cavaliergopher/cpio"
)

type entry struct {
	hdr  *cpio.Header
	data string
}

// readArchives lists the entries of one or more concatenated archives the
// way the kernel walks them: an archive ends at its trailer, NUL padding
// is skipped, and the next archive starts at a 4-byte aligned "070701".
func readArchives(t *testing.T, b []byte) []entry {
	t.Helper()
	var entries []entry
	r := bytes.NewReader(b)
	for r.Len() > 0 {
		if c, _ := r.ReadByte(); c == 0 {
			continue
		}
		r.UnreadByte()
		if off := r.Size() - int64(r.Len()); off%4 != 0 {
			t.Fatalf("archive starts at offset %d, not 4-byte aligned", off)
		}
		cr := cpio.NewReader(r)
		for {
			hdr, err := cr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("reading archive: %v", err)
			}
			data, err := io.ReadAll(cr)
			if err != nil {
				t.Fatal(err)
			}
			entries = append(entries, entry{hdr, string(data)})
		}
	}
	return entries
}

// rawHeader holds the newc header fields of each entry by name, including
// the rdev fields the cpio library does not decode.
type rawHeader struct {
	ino, mode, uid, gid, nlink, mtime, size, rdevMajor, rdevMinor uint64
}

func rawHeaders(t *testing.T, b []byte) map[string]rawHeader {
	t.Helper()
	headers := make(map[string]rawHeader)
	for off := 0; off < len(b); {
		if b[off] == 0 {
			off++
			continue
		}
		if string(b[off:off+6]) != "070701" {
			t.Fatalf("no newc magic at offset %d", off)
		}
		field := func(i int) uint64 {
			v, err := strconv.ParseUint(string(b[off+6+8*i:off+14+8*i]), 16, 32)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
		h := rawHeader{field(0), field(1), field(2), field(3), field(4), field(5), field(6), field(9), field(10)}
		namesize := int(field(11))
		name := string(b[off+110 : off+110+namesize-1])
		off += 110 + namesize
		off += pad4(off) + int(h.size)
		off += pad4(off)
		if name != trailer {
			headers[name] = h
		}
	}
	return headers
}

func names(entries []entry) []string {
	var out []string
	for _, e := range entries {
		out = append(out, e.hdr.Name)
	}
	return out
}

func TestWriterRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	steps := []error{
		w.AddDir("etc", 0o755),
		w.AddFile("etc/hostname", 0o644, strings.NewReader("pyro\n"), 5),
		w.AddFile("etc/empty", 0o600, nil, 0),
		w.AddFile("usr/bin/tool", 0o755|fs.ModeSetuid, strings.NewReader("#!/bin/sh\n"), 10),
		w.AddSymlink("bin", "usr/bin"),
		w.AddCharDevice("dev/console", 0o600, 5, 1),
		w.AddDir("tmp", 0o777|fs.ModeSticky),
		w.Close(),
	}
	for i, err := range steps {
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	if buf.Len()%4 != 0 {
		t.Errorf("archive is %d bytes, not a multiple of 4", buf.Len())
	}

	entries := readArchives(t, buf.Bytes())
	want := []string{"etc", "etc/hostname", "etc/empty", "usr", "usr/bin", "usr/bin/tool", "bin", "dev", "dev/console", "tmp"}
	if got := names(entries); !reflect.DeepEqual(got, want) {
		t.Fatalf("entries = %v, want %v", got, want)
	}
	byName := make(map[string]entry)
	for _, e := range entries {
		byName[e.hdr.Name] = e
		if e.hdr.Uid != 0 || e.hdr.Guid != 0 || e.hdr.ModTime.Unix() != 0 {
			t.Errorf("%s: uid %d gid %d mtime %v, want all zero", e.hdr.Name, e.hdr.Uid, e.hdr.Guid, e.hdr.ModTime)
		}
	}
	for _, tt := range []struct {
		name     string
		mode     cpio.FileMode
		data     string
		linkname string
	}{
		{"etc", cpio.TypeDir | 0o755, "", ""},
		{"etc/hostname", cpio.TypeReg | 0o644, "pyro\n", ""},
		{"etc/empty", cpio.TypeReg | 0o600, "", ""},
		{"usr", cpio.TypeDir | 0o755, "", ""},
		{"usr/bin/tool", cpio.TypeReg | cpio.ModeSetuid | 0o755, "#!/bin/sh\n", ""},
		{"bin", cpio.TypeSymlink | 0o777, "", "usr/bin"},
		{"dev/console", cpio.TypeChar | 0o600, "", ""},
		{"tmp", cpio.TypeDir | cpio.ModeSticky | 0o777, "", ""},
	} {
		e := byName[tt.name]
		if e.hdr.Mode != tt.mode || e.data != tt.data || e.hdr.Linkname != tt.linkname {
			t.Errorf("%s: mode %v data %q link %q, want %v %q %q", tt.name, e.hdr.Mode, e.data, e.hdr.Linkname, tt.mode, tt.data, tt.linkname)
		}
	}

	raw := rawHeaders(t, buf.Bytes())
	if c := raw["dev/console"]; c.rdevMajor != 5 || c.rdevMinor != 1 {
		t.Errorf("dev/console is %d:%d, want 5:1", c.rdevMajor, c.rdevMinor)
	}
	inodes := make(map[uint64]string)
	for name, h := range raw {
		if h.mode&0o170000 != modeDir && h.nlink != 1 {
			t.Errorf("%s: nlink %d, want 1", name, h.nlink)
		}
		if other, ok := inodes[h.ino]; ok || h.ino == 0 {
			t.Errorf("%s: inode %d also used by %q", name, h.ino, other)
		}
		inodes[h.ino] = name
	}
}

func TestWriterDeterministic(t *testing.T) {
	write := func() []byte {
		var buf bytes.Buffer
		w := NewWriter(&buf)
		w.AddFile("a/b", 0o644, strings.NewReader("x"), 1)
		w.AddCharDevice("dev/null", 0o666, 1, 3)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	if a, b := write(), write(); !bytes.Equal(a, b) {
		t.Error("the same entries gave different archives")
	}
}

func TestWriterRefuses(t *testing.T) {
	tests := []struct {
		name    string
		add     func(w *Writer) error
		wantErr string
	}{
		{"empty name", func(w *Writer) error { return w.AddDir("", 0o755) }, "empty name"},
		{"dot dot", func(w *Writer) error { return w.AddFile("../etc/passwd", 0o644, nil, 0) }, "'..' component"},
		{"inner dot dot", func(w *Writer) error { return w.AddDir("lib/../../x", 0o755) }, "'..' component"},
		{"dot dot symlink", func(w *Writer) error { return w.AddSymlink("a/..", "b") }, "'..' component"},
		{"dot dot device", func(w *Writer) error { return w.AddCharDevice("..", 0o600, 1, 3) }, "'..' component"},
		{"absolute", func(w *Writer) error { return w.AddDir("/etc", 0o755) }, "not a clean relative path"},
		{"trailing slash", func(w *Writer) error { return w.AddDir("etc/", 0o755) }, "not a clean relative path"},
		{"double slash", func(w *Writer) error { return w.AddDir("a//b", 0o755) }, "not a clean relative path"},
		{"dot", func(w *Writer) error { return w.AddDir(".", 0o755) }, "not a clean relative path"},
		{"NUL", func(w *Writer) error { return w.AddDir("a\x00b", 0o755) }, "not a clean relative path"},
		{"trailer name", func(w *Writer) error { return w.AddDir(trailer, 0o755) }, "not a clean relative path"},
		{"duplicate", func(w *Writer) error {
			w.AddDir("etc", 0o755)
			return w.AddDir("etc", 0o700)
		}, "already in the archive"},
		{"implicit then explicit", func(w *Writer) error {
			w.AddFile("etc/x", 0o644, nil, 0)
			return w.AddDir("etc", 0o700)
		}, "already in the archive"},
		{"parent is a file", func(w *Writer) error {
			w.AddFile("init", 0o755, nil, 0)
			return w.AddFile("init/x", 0o644, nil, 0)
		}, "init is not a directory"},
		{"type bits in mode", func(w *Writer) error { return w.AddFile("f", fs.ModeDir|0o755, nil, 0) }, "more than permission bits"},
		{"negative size", func(w *Writer) error { return w.AddFile("f", 0o644, nil, -1) }, "out of range"},
		{"too large", func(w *Writer) error { return w.AddFile("f", 0o644, strings.NewReader(""), 1<<32) }, "out of range"},
		{"empty symlink target", func(w *Writer) error { return w.AddSymlink("l", "") }, "invalid symlink target"},
		{"after close", func(w *Writer) error {
			w.Close()
			return w.AddDir("etc", 0o755)
		}, ErrClosed.Error()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.add(NewWriter(io.Discard))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestWriterShortData(t *testing.T) {
	w := NewWriter(io.Discard)
	err := w.AddFile("f", 0o644, strings.NewReader("abc"), 10)
	if err == nil || !strings.Contains(err.Error(), "after 3 of 10 bytes") {
		t.Fatalf("err = %v, want a short data error", err)
	}
	// The archive is broken now; the error sticks.
	if err2 := w.AddDir("d", 0o755); err2 != err {
		t.Errorf("next add: %v, want %v", err2, err)
	}
	if err2 := w.Close(); err2 != err {
		t.Errorf("close: %v, want %v", err2, err)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestWriterWriteError(t *testing.T) {
	w := NewWriter(failingWriter{})
	if err := w.AddDir("d", 0o755); err == nil || !strings.Contains(err.Error(), "adding d: disk full") {
		t.Fatalf("err = %v, want the write error", err)
	}
}
