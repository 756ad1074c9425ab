package initramfs

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/pyro-sandbox/pyro/internal/kernel"
)

func writeTemp(t *testing.T, name, data string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func testModules(t *testing.T) []kernel.Module {
	return []kernel.Module{
		{Name: "virtio_ring", Path: writeTemp(t, "virtio_ring.ko", "ring")},
		{Name: "virtio", Path: writeTemp(t, "virtio.ko", "virtio"), Depends: []string{"virtio_ring"}},
		// The file name uses '-'; the archive uses the module name.
		{Name: "virtio_rng", Path: writeTemp(t, "virtio-rng.ko", "rng"), Depends: []string{"virtio", "virtio_ring"}},
	}
}

func contents(entries []entry) map[string]string {
	m := make(map[string]string)
	for _, e := range entries {
		m[e.hdr.Name] = e.data
	}
	return m
}

func TestWriteModules(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteModules(&buf, testModules(t)); err != nil {
		t.Fatal(err)
	}
	entries := readArchives(t, buf.Bytes())
	want := []string{"lib", "lib/modules", "lib/modules/virtio_ring.ko", "lib/modules/virtio.ko", "lib/modules/virtio_rng.ko", "lib/modules/load-order"}
	if got := names(entries); !reflect.DeepEqual(got, want) {
		t.Fatalf("entries = %v, want %v", got, want)
	}
	files := contents(entries)
	if got, want := files[LoadOrderPath], "virtio_ring\nvirtio virtio_ring\nvirtio_rng virtio virtio_ring\n"; got != want {
		t.Errorf("load-order = %q, want %q", got, want)
	}
	if got := files["lib/modules/virtio_rng.ko"]; got != "rng" {
		t.Errorf("virtio_rng.ko = %q, want the module file", got)
	}
}

func TestWriteModulesErrors(t *testing.T) {
	for _, tt := range []struct {
		name    string
		mods    []kernel.Module
		wantErr string
	}{
		{"path as name", []kernel.Module{{Name: "../x", Path: writeTemp(t, "x.ko", "")}}, `invalid module name "../x"`},
		{"missing file", []kernel.Module{{Name: "gone", Path: filepath.Join(t.TempDir(), "gone.ko")}}, "adding module gone"},
		{"directory", []kernel.Module{{Name: "dir", Path: t.TempDir()}}, "not a regular file"},
		{"twice", []kernel.Module{{Name: "a", Path: writeTemp(t, "a.ko", "")}, {Name: "a", Path: writeTemp(t, "a.ko", "")}}, "already in the archive"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := WriteModules(&bytes.Buffer{}, tt.mods)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestWriteAgent(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteAgent(&buf, writeTemp(t, "pyro", "\x7fELF pyro")); err != nil {
		t.Fatal(err)
	}
	entries := readArchives(t, buf.Bytes())
	want := []string{"dev", "proc", "sys", "run", "tmp", "newroot", "lib", "lib/modules", "dev/console", "dev/null", "init"}
	if got := names(entries); !reflect.DeepEqual(got, want) {
		t.Fatalf("entries = %v, want %v", got, want)
	}
	raw := rawHeaders(t, buf.Bytes())
	for _, tt := range []struct {
		name         string
		mode         uint64
		major, minor uint64
	}{
		{"dev", modeDir | 0o755, 0, 0},
		{"newroot", modeDir | 0o755, 0, 0},
		{"lib/modules", modeDir | 0o755, 0, 0},
		{"dev/console", modeChar | 0o600, 5, 1},
		{"dev/null", modeChar | 0o666, 1, 3},
		{"init", modeRegular | 0o755, 0, 0},
	} {
		h := raw[tt.name]
		if h.mode != tt.mode || h.rdevMajor != tt.major || h.rdevMinor != tt.minor {
			t.Errorf("%s: mode %o rdev %d:%d, want %o %d:%d", tt.name, h.mode, h.rdevMajor, h.rdevMinor, tt.mode, tt.major, tt.minor)
		}
	}
	if got := contents(entries)["init"]; got != "\x7fELF pyro" {
		t.Errorf("init = %q, want the binary", got)
	}
}

func TestWriteAgentMissingBinary(t *testing.T) {
	err := WriteAgent(&bytes.Buffer{}, filepath.Join(t.TempDir(), "nope"))
	if err == nil || !strings.Contains(err.Error(), "adding init") {
		t.Fatalf("err = %v, want an error about init", err)
	}
}

// TestConcatenated checks the initramfs pyro boots: modules.cpio ++
// agent.cpio reads as every entry of both, and the kernel can't mistake an
// entry of one for a hard link to the other's.
func TestConcatenated(t *testing.T) {
	var modules, agent bytes.Buffer
	if err := WriteModules(&modules, testModules(t)); err != nil {
		t.Fatal(err)
	}
	if err := WriteAgent(&agent, writeTemp(t, "pyro", "binary")); err != nil {
		t.Fatal(err)
	}
	initramfs := append(bytes.Clone(modules.Bytes()), agent.Bytes()...)

	got := names(readArchives(t, initramfs))
	want := append(names(readArchives(t, modules.Bytes())), names(readArchives(t, agent.Bytes()))...)
	if !reflect.DeepEqual(got, want) || len(got) != 17 {
		t.Fatalf("entries = %v, want both archives' %v", got, want)
	}

	first, second := rawHeaders(t, modules.Bytes()), rawHeaders(t, agent.Bytes())
	owner := make(map[uint64]string)
	for _, headers := range []map[string]rawHeader{first, second} {
		for name, h := range headers {
			if h.mode&0o170000 != modeDir && h.nlink != 1 {
				t.Errorf("%s: nlink %d; the kernel would treat it as a hard link", name, h.nlink)
			}
			// A path in both archives (lib, lib/modules) is the same
			// directory; any other shared inode would be a collision.
			if other, ok := owner[h.ino]; ok && other != name {
				t.Errorf("%s and %s share inode %d", name, other, h.ino)
			}
			owner[h.ino] = name
		}
	}
}
