package fsutil

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "state.json")
	for _, tc := range []struct {
		data []byte
		perm os.FileMode
	}{
		{[]byte(`{"a":1}`), 0o644},
		{[]byte("replaced, longer than before\n"), 0o600},
		{nil, 0o640},
		{[]byte("x"), 0o755},
	} {
		if err := WriteFileAtomic(p, tc.data, tc.perm); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(tc.data) {
			t.Errorf("content %q, want %q", got, tc.data)
		}
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		// The mode is set exactly, whatever the umask.
		if fi.Mode().Perm() != tc.perm {
			t.Errorf("mode %v, want %v", fi.Mode().Perm(), tc.perm)
		}
		entries, _ := os.ReadDir(dir)
		if len(entries) != 1 {
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			t.Errorf("directory holds %q, want only state.json", names)
		}
	}
}

func TestWriteFileAtomicFailureLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	// The target is a directory: the rename fails after the temporary
	// file was written.
	target := filepath.Join(dir, "target")
	if err := os.Mkdir(target, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(target, "keep"), nil, 0o644)
	if err := WriteFileAtomic(target, []byte("data"), 0o644); err == nil {
		t.Fatal("WriteFileAtomic over a non-empty directory succeeded")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("a failed write left %d entries", len(entries))
	}
	if err := WriteFileAtomic(filepath.Join(dir, "missing", "f"), nil, 0o644); err == nil {
		t.Error("WriteFileAtomic into a missing directory succeeded")
	}
}

func TestTryLock(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.lock")
	l, ok, err := TryLock(p)
	if err != nil || !ok {
		t.Fatalf("TryLock = %v, %v", ok, err)
	}
	// Another open file description is another holder, even in this process.
	l2, ok, err := TryLock(p)
	if err != nil || ok || l2 != nil {
		t.Fatalf("second TryLock = %v, %v, %v; want busy", l2, ok, err)
	}
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
	if err := l.Unlock(); err != nil {
		t.Errorf("second Unlock: %v", err)
	}
	var nilLock *Lock
	if err := nilLock.Unlock(); err != nil {
		t.Errorf("Unlock of nil: %v", err)
	}
	l3, ok, err := TryLock(p)
	if err != nil || !ok {
		t.Fatalf("TryLock after Unlock = %v, %v", ok, err)
	}
	l3.Unlock()

	if _, _, err := TryLock(filepath.Join(t.TempDir(), "missing", "x.lock")); err == nil {
		t.Error("TryLock in a missing directory succeeded")
	}
}

func TestAcquireLockWaits(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.lock")
	held, _, err := TryLock(p)
	if err != nil {
		t.Fatal(err)
	}
	released := make(chan struct{})
	time.AfterFunc(150*time.Millisecond, func() {
		close(released) // before the unlock, so AcquireLock cannot return first
		held.Unlock()
	})
	var waited atomic.Int32
	l, err := AcquireLock(context.Background(), p, func() { waited.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock()
	select {
	case <-released:
	default:
		t.Error("AcquireLock returned while the lock was held")
	}
	if n := waited.Load(); n != 1 {
		t.Errorf("waiting called %d times, want 1", n)
	}
}

func TestAcquireLockFree(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.lock")
	l, err := AcquireLock(context.Background(), p, func() { t.Error("waiting called for a free lock") })
	if err != nil {
		t.Fatal(err)
	}
	l.Unlock()
}

func TestAcquireLockCancel(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.lock")
	held, _, err := TryLock(p)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Unlock()

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	l, err := AcquireLock(ctx, p, nil)
	if !errors.Is(err, context.Canceled) || l != nil {
		t.Fatalf("AcquireLock = %v, %v; want context.Canceled", l, err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("AcquireLock took %v to notice the cancel", d)
	}

	// An already cancelled context returns at once.
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	if _, err := AcquireLock(ctx, p, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("AcquireLock with a cancelled context: %v", err)
	}
}

func TestRemoveTreeReadOnlyDirs(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "work")
	for _, d := range []string{"a/b/c", "ro/inner", "noperm/x"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"a/b/c/file", "ro/file", "ro/inner/file", "noperm/x/file"} {
		if err := os.WriteFile(filepath.Join(root, f), []byte("x"), 0o444); err != nil {
			t.Fatal(err)
		}
	}
	outside := filepath.Join(base, "outside")
	os.WriteFile(outside, []byte("keep"), 0o644)
	os.Symlink(outside, filepath.Join(root, "a", "link"))
	os.Symlink(base, filepath.Join(root, "dirlink"))
	os.Chmod(filepath.Join(root, "ro", "inner"), 0o555)
	os.Chmod(filepath.Join(root, "ro"), 0o555)
	os.Chmod(filepath.Join(root, "noperm", "x"), 0o000)
	os.Chmod(filepath.Join(root, "noperm"), 0o000)

	if err := RemoveTree(root); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(root); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s still exists: %v", root, err)
	}
	// Symbolic links are removed, not followed.
	if b, err := os.ReadFile(outside); err != nil || string(b) != "keep" {
		t.Errorf("a file a link pointed to was harmed: %q, %v", b, err)
	}

	if err := RemoveTree(root); err != nil {
		t.Errorf("RemoveTree of a missing tree: %v", err)
	}
	f := filepath.Join(base, "plain")
	os.WriteFile(f, nil, 0o644)
	if err := RemoveTree(f); err != nil {
		t.Errorf("RemoveTree of a file: %v", err)
	}
}

func TestRemoveTreeRefusesRoot(t *testing.T) {
	for _, p := range []string{"/", "//", "/..", "/./", "/tmp/../"} {
		err := RemoveTree(p)
		if err == nil || !strings.Contains(err.Error(), "refusing") {
			t.Errorf("RemoveTree(%q) = %v, want a refusal", p, err)
		}
	}
	if _, err := os.Stat("/tmp"); err != nil {
		t.Fatalf("/tmp: %v", err)
	}
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("this test needs root (it mounts file systems to check that RemoveTree never crosses into a mount); run it as root, e.g. sudo go test ./internal/fsutil/")
	}
}

// mount mounts and makes sure the mount is gone when the test ends, even
// if RemoveTree failed to detach it.
func mount(t *testing.T, source, target, fstype string, flags uintptr) {
	t.Helper()
	if err := unix.Mount(source, target, fstype, flags, ""); err != nil {
		t.Fatalf("mounting %s on %s: %v", source, target, err)
	}
	t.Cleanup(func() {
		for unix.Unmount(target, unix.MNT_DETACH) == nil {
		}
	})
}

func canary(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "canary")
	if err := os.WriteFile(p, []byte("alive"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func checkCanary(t *testing.T, p string) {
	t.Helper()
	if b, err := os.ReadFile(p); err != nil || string(b) != "alive" {
		t.Errorf("canary %s was harmed: %q, %v", p, b, err)
	}
}

func isMounted(t *testing.T, dir string) bool {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) >= 5 {
			mp := unescapeMountinfo(f[4])
			if mp == dir || strings.HasPrefix(mp, dir+"/") {
				return true
			}
		}
	}
	return false
}

func TestRemoveTreeDetachesMounts(t *testing.T) {
	requireRoot(t)
	base, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// Host directories a killed build left bind-mounted into its work
	// tree, on the same file system (so the device check alone would not
	// stop the walk), under a name with a space (escaped in mountinfo),
	// below a read-only directory, and stacked twice.
	hostDir := filepath.Join(base, "host dir")
	hostDev := filepath.Join(base, "host-dev")
	for _, d := range []string{hostDir, hostDev} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	c1, c2 := canary(t, hostDir), canary(t, hostDev)

	root := filepath.Join(base, "work")
	bind1 := filepath.Join(root, "rootfs", "with space")
	bind2 := filepath.Join(root, "rootfs", "ro", "dev")
	tmpfs := filepath.Join(root, "rootfs", "proc")
	nested := filepath.Join(tmpfs, "nested")
	for _, d := range []string{bind1, bind2, tmpfs} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mount(t, hostDir, bind1, "", unix.MS_BIND)
	mount(t, hostDev, bind2, "", unix.MS_BIND)
	mount(t, hostDev, bind2, "", unix.MS_BIND)
	mount(t, "tmpfs", tmpfs, "tmpfs", 0)
	if err := os.Mkdir(nested, 0o755); err != nil {
		t.Fatal(err)
	}
	mount(t, hostDir, nested, "", unix.MS_BIND)
	os.Chmod(filepath.Join(root, "rootfs", "ro"), 0o555)
	os.WriteFile(filepath.Join(root, "rootfs", "file"), []byte("x"), 0o644)

	if err := RemoveTree(root); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(root); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s still exists: %v", root, err)
	}
	if isMounted(t, root) {
		t.Errorf("something is still mounted under %s", root)
	}
	checkCanary(t, c1)
	checkCanary(t, c2)
}

func TestRemoveTreeWhoseRootIsAMount(t *testing.T) {
	requireRoot(t)
	base, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	hostDir := filepath.Join(base, "host")
	os.Mkdir(hostDir, 0o755)
	c := canary(t, hostDir)
	root := filepath.Join(base, "work")
	os.Mkdir(root, 0o755)
	mount(t, hostDir, root, "", unix.MS_BIND)

	if err := RemoveTree(root); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(root); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s still exists: %v", root, err)
	}
	checkCanary(t, c)
}

func TestRemoveTreeRelativePath(t *testing.T) {
	base := t.TempDir()
	t.Chdir(base)
	os.MkdirAll(filepath.Join("rel", "a"), 0o755)
	if err := RemoveTree("rel"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(base, "rel")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("rel still exists: %v", err)
	}
}

func TestUnescapeMountinfo(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"/plain/path", "/plain/path"},
		{`/with\040space`, "/with space"},
		{`/tab\011and\012newline`, "/tab\tand\nnewline"},
		{`/back\134slash`, `/back\slash`},
		{`\040`, " "},
		{`/end\040`, "/end "},
		{`/short\04`, `/short\04`},
		{`/not\08octal`, `/not\08octal`},
		{`/trailing\`, `/trailing\`},
		{"", ""},
	} {
		if got := unescapeMountinfo(tc.in); got != tc.want {
			t.Errorf("unescapeMountinfo(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
