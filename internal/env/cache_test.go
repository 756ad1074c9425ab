package env

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/pyro-sandbox/pyro/internal/errs"
)

func newCache(t *testing.T) *Cache {
	t.Helper()
	return &Cache{Dir: filepath.Join(t.TempDir(), "cache")}
}

// putBytes stores data as a blob through a file in the cache's tmp/, as
// pulls do.
func putBytes(t *testing.T, c *Cache, data []byte) Blob {
	t.Helper()
	dir, err := c.TempDir("put-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := c.PutFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// install makes an installed environment name whose blobs hold content
// derived from tag, so two environments with the same tag share blobs.
func install(t *testing.T, c *Cache, name, tag string) *Manifest {
	t.Helper()
	m := &Manifest{
		Schema:    ManifestSchema,
		Name:      name,
		Version:   "1",
		Source:    "test",
		CreatedAt: time.Now().UTC().Truncate(time.Second),
		Kernel:    Kernel{Blob: putBytes(t, c, []byte("kernel "+tag)), Release: "6.1.0", HZ: 250, PVH: true},
		Modules:   putBytes(t, c, []byte("modules "+tag)),
		Rootfs:    putBytes(t, c, []byte("rootfs "+tag)),
	}
	if err := c.Install(m); err != nil {
		t.Fatal(err)
	}
	return m
}

func blobCount(t *testing.T, c *Cache) int {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(c.Dir, "blobs", "sha256"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return len(entries)
}

func TestPutFile(t *testing.T) {
	c := newCache(t)
	data := []byte("the root filesystem")
	sum := sha256.Sum256(data)
	wantDigest := "sha256:" + hex.EncodeToString(sum[:])

	src := filepath.Join(t.TempDir(), "rootfs.ext4")
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := c.PutFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if b.Digest != wantDigest || b.Size != int64(len(data)) {
		t.Errorf("PutFile = %+v, want %s size %d", b, wantDigest, len(data))
	}
	if err := checkDigest(b.Digest); err != nil {
		t.Error(err)
	}
	if _, err := os.Stat(src); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the source file is still there: %v", err)
	}
	p := c.BlobPath(b.Digest)
	if p != filepath.Join(c.Dir, "blobs", "sha256", hex.EncodeToString(sum[:])) {
		t.Errorf("BlobPath = %s", p)
	}
	got, err := os.ReadFile(p)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("blob content %q, %v", got, err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o444 {
		t.Errorf("blob mode %v, want read-only 0444", mode)
	}

	// The same content again: the existing blob is kept, the new file dropped.
	before := fi.ModTime()
	src2 := filepath.Join(t.TempDir(), "again")
	if err := os.WriteFile(src2, data, 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	b2, err := c.PutFile(src2)
	if err != nil {
		t.Fatal(err)
	}
	if b2 != b {
		t.Errorf("second PutFile = %+v, want %+v", b2, b)
	}
	if _, err := os.Stat(src2); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the duplicate source file is still there: %v", err)
	}
	if fi, err := os.Stat(p); err != nil || !fi.ModTime().Equal(before) {
		t.Errorf("the existing blob was replaced")
	}
	if n := blobCount(t, c); n != 1 {
		t.Errorf("%d blobs, want 1", n)
	}

	// Other content is another blob.
	b3 := putBytes(t, c, []byte("other"))
	if b3.Digest == b.Digest {
		t.Error("different content, same digest")
	}
	if n := blobCount(t, c); n != 2 {
		t.Errorf("%d blobs, want 2", n)
	}

	if _, err := c.PutFile(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("PutFile of a missing file succeeded")
	}
}

func TestPutFileEmpty(t *testing.T) {
	c := newCache(t)
	b := putBytes(t, c, nil)
	// sha256 of nothing.
	if b.Digest != "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" || b.Size != 0 {
		t.Errorf("PutFile of an empty file = %+v", b)
	}
}

func TestInstallAndInstalled(t *testing.T) {
	c := newCache(t)
	if l, err := c.List(); err != nil || len(l) != 0 {
		t.Fatalf("List of an empty cache = %v, %v", l, err)
	}
	m := install(t, c, "debian:12", "a")
	got, err := c.Installed("debian:12")
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != m.Name || got.Kernel != m.Kernel || got.Modules != m.Modules || got.Rootfs != m.Rootfs || !got.CreatedAt.Equal(m.CreatedAt) {
		t.Errorf("Installed = %+v, want %+v", got, m)
	}
	// No temporary file is left next to the manifest.
	entries, err := os.ReadDir(c.envDir("debian:12"))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "manifest.json" {
		t.Errorf("environment directory holds %v", entries)
	}

	install(t, c, "debian:12-build", "b")
	install(t, c, "a/b", "a") // escaped on disk, shares blobs with debian:12
	l, err := c.List()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range l {
		names = append(names, m.Name)
	}
	if want := []string{"a/b", "debian:12", "debian:12-build"}; !slices.Equal(names, want) {
		t.Errorf("List = %q, want %q", names, want)
	}
}

func TestInstallRefuses(t *testing.T) {
	c := newCache(t)
	m := validManifest() // its blobs are not in the cache
	if err := c.Install(m); err == nil {
		t.Error("Install with missing blobs succeeded")
	}
	m.Schema = 99
	if err := c.Install(m); err == nil {
		t.Error("Install of a bad manifest succeeded")
	}
	if _, err := os.Stat(c.envDir(m.Name)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused Install left %s behind", c.envDir(m.Name))
	}
}

func TestInstalledNotFound(t *testing.T) {
	c := newCache(t)
	_, err := c.Installed("debian:12")
	if errs.KindOf(err) != errs.NotFound {
		t.Fatalf("Installed of nothing: %v (kind %s), want not_found", err, errs.KindOf(err))
	}
	if hint := errs.HintOf(err); hint != "run 'pyro env pull debian:12'" {
		t.Errorf("hint %q", hint)
	}

	m := install(t, c, "debian:12", "a")
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T)
	}{
		{"missing blob", func(t *testing.T) {
			p := c.BlobPath(m.Rootfs.Digest)
			os.Chmod(p, 0o644)
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
		}},
		{"truncated blob", func(t *testing.T) {
			p := c.BlobPath(m.Kernel.Digest)
			os.Chmod(p, 0o644)
			if err := os.Truncate(p, 3); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			install(t, c, "debian:12", "a")
			if _, err := c.Installed("debian:12"); err != nil {
				t.Fatal(err)
			}
			tc.damage(t)
			_, err := c.Installed("debian:12")
			if errs.KindOf(err) != errs.NotFound {
				t.Fatalf("Installed: %v (kind %s), want not_found", err, errs.KindOf(err))
			}
			if errs.HintOf(err) == "" {
				t.Error("no hint")
			}
			if l, _ := c.List(); len(l) != 0 {
				t.Errorf("List shows a damaged environment: %v", l)
			}
		})
	}
}

func TestInstalledDamagedManifest(t *testing.T) {
	c := newCache(t)
	install(t, c, "debian:12", "a")
	p := filepath.Join(c.envDir("debian:12"), "manifest.json")
	if err := os.WriteFile(p, []byte(`{"schema":1,"name":"debian:12"`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := c.Installed("debian:12")
	if err == nil || errs.KindOf(err) == errs.NotFound {
		t.Fatalf("Installed of a damaged manifest: %v (kind %s)", err, errs.KindOf(err))
	}
	if errs.HintOf(err) == "" {
		t.Error("no hint")
	}
}

func TestRemove(t *testing.T) {
	c := newCache(t)
	m := install(t, c, "debian:12", "a")
	c.Touch("debian:12")
	if c.LastUsed("debian:12").IsZero() {
		t.Error("LastUsed is zero after Touch")
	}
	if err := c.Remove("debian:12"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Installed("debian:12"); errs.KindOf(err) != errs.NotFound {
		t.Errorf("Installed after Remove: %v", err)
	}
	entries, _ := os.ReadDir(filepath.Join(c.Dir, "envs"))
	if len(entries) != 0 {
		t.Errorf("envs/ holds %v after Remove", entries)
	}
	// Blobs stay until Prune.
	for _, b := range m.Blobs() {
		if _, err := os.Stat(c.BlobPath(b.Digest)); err != nil {
			t.Errorf("blob gone after Remove: %v", err)
		}
	}
	if err := c.Remove("debian:12"); err != nil {
		t.Errorf("second Remove: %v", err)
	}
	if err := c.Remove("never-installed"); err != nil {
		t.Errorf("Remove of a missing environment: %v", err)
	}
}

func TestTouchAndLastUsed(t *testing.T) {
	c := newCache(t)
	if !c.LastUsed("debian:12").IsZero() {
		t.Error("LastUsed of a missing environment is not zero")
	}
	install(t, c, "debian:12", "a")
	if !c.LastUsed("debian:12").IsZero() {
		t.Error("LastUsed of a never booted environment is not zero")
	}
	c.Touch("debian:12")
	first := c.LastUsed("debian:12")
	if time.Since(first) > time.Minute {
		t.Errorf("LastUsed = %v", first)
	}
	past := time.Now().Add(-time.Hour)
	os.Chtimes(filepath.Join(c.envDir("debian:12"), "last-used"), past, past)
	c.Touch("debian:12")
	if !c.LastUsed("debian:12").After(past.Add(time.Minute)) {
		t.Error("Touch did not move LastUsed forward")
	}
	// The manifest is untouched and still valid.
	if _, err := c.Installed("debian:12"); err != nil {
		t.Error(err)
	}
}

func TestPrune(t *testing.T) {
	ctx := context.Background()
	c := newCache(t)
	keepM := install(t, c, "keep", "k")
	install(t, c, "stale", "s")
	shared := install(t, c, "stale-shared", "k") // same blobs as "keep"
	orphan := putBytes(t, c, []byte("an orphan blob of 27 bytes."))
	if n := blobCount(t, c); n != 7 {
		t.Fatalf("%d blobs before Prune, want 7", n)
	}
	// Derived and leftover files, counted by the disk space they take.
	var derived int64
	for _, p := range []string{filepath.Join(c.Dir, "boot", "x.cpio"), filepath.Join(c.Dir, "tmp", "pull-1", "rootfs")} {
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte("12345"), 0o644); err != nil {
			t.Fatal(err)
		}
		derived += allocated(t, p)
	}
	// A template's memory: as large as the guest's RAM, sparse.
	mem := filepath.Join(c.Dir, "boot", "templates", "k", "memory")
	os.MkdirAll(filepath.Dir(mem), 0o755)
	if err := os.WriteFile(mem, []byte("12345"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(mem, 1<<30); err != nil {
		t.Fatal(err)
	}
	derived += allocated(t, mem)

	res, err := c.Prune(ctx, func(m *Manifest) bool { return m.Name == "keep" }, nil)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(res.RemovedEnvironments)
	if want := []string{"stale", "stale-shared"}; !slices.Equal(res.RemovedEnvironments, want) {
		t.Errorf("removed environments %q, want %q", res.RemovedEnvironments, want)
	}
	// stale's 3 blobs and the orphan; the shared ones stay with "keep".
	if res.RemovedBlobs != 4 {
		t.Errorf("removed %d blobs, want 4", res.RemovedBlobs)
	}
	wantFreed := int64(len("kernel s")+len("modules s")+len("rootfs s")) + orphan.Size + derived
	if derived >= 1<<30 {
		t.Fatalf("the sparse file takes %d bytes", derived)
	}
	if res.FreedBytes != wantFreed {
		t.Errorf("freed %d bytes, want %d", res.FreedBytes, wantFreed)
	}
	if _, err := c.Installed("keep"); err != nil {
		t.Errorf("the kept environment is damaged: %v", err)
	}
	for _, b := range keepM.Blobs() {
		if _, err := os.Stat(c.BlobPath(b.Digest)); err != nil {
			t.Errorf("a used blob was removed: %v", err)
		}
	}
	if _, err := c.Installed(shared.Name); errs.KindOf(err) != errs.NotFound {
		t.Errorf("stale-shared still installed: %v", err)
	}
	if n := blobCount(t, c); n != 3 {
		t.Errorf("%d blobs after Prune, want 3", n)
	}
	for _, d := range []string{"boot", "tmp"} {
		if _, err := os.Stat(filepath.Join(c.Dir, d)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s/ survived Prune: %v", d, err)
		}
	}

	// Pruning again finds nothing.
	res, err = c.Prune(ctx, func(*Manifest) bool { return true }, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.RemovedEnvironments) != 0 || res.RemovedBlobs != 0 || res.FreedBytes != 0 {
		t.Errorf("second Prune = %+v", res)
	}
}

func TestPruneEmptyCache(t *testing.T) {
	c := newCache(t)
	res, err := c.Prune(context.Background(), func(*Manifest) bool { return false }, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.RemovedEnvironments) != 0 || res.RemovedBlobs != 0 || res.FreedBytes != 0 {
		t.Errorf("Prune of an empty cache = %+v", res)
	}
}

func TestPruneSkipsEnvironmentBeingPulled(t *testing.T) {
	ctx := context.Background()
	c := newCache(t)
	busy := install(t, c, "busy", "b")
	install(t, c, "idle", "i")
	leftover := filepath.Join(c.Dir, "tmp", "pull-busy", "rootfs")
	os.MkdirAll(filepath.Dir(leftover), 0o755)
	os.WriteFile(leftover, []byte("in progress"), 0o644)

	// Another open lock on "busy": a pull of it is running.
	lock, err := c.Lock(ctx, "busy", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Unlock()

	res, err := c.Prune(ctx, func(*Manifest) bool { return false }, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.RemovedEnvironments, []string{"idle"}) {
		t.Errorf("removed %q, want only idle", res.RemovedEnvironments)
	}
	if _, err := c.Installed("busy"); err != nil {
		t.Errorf("the environment being pulled was touched: %v", err)
	}
	for _, b := range busy.Blobs() {
		if _, err := os.Stat(c.BlobPath(b.Digest)); err != nil {
			t.Errorf("a blob of the environment being pulled was removed: %v", err)
		}
	}
	if _, err := os.Stat(leftover); err != nil {
		t.Errorf("the work of a running pull was removed: %v", err)
	}

	// Once the pull is over, the next prune takes both.
	lock.Unlock()
	res, err = c.Prune(ctx, func(*Manifest) bool { return false }, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.RemovedEnvironments, []string{"busy"}) {
		t.Errorf("removed %q, want busy", res.RemovedEnvironments)
	}
	if _, err := os.Stat(leftover); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("leftover of a finished pull survived: %v", err)
	}
	if n := blobCount(t, c); n != 0 {
		t.Errorf("%d blobs left", n)
	}
}

func TestLockWaits(t *testing.T) {
	c := newCache(t)
	first, err := c.Lock(context.Background(), "debian:12", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	waited := 0
	if _, err := c.Lock(ctx, "debian:12", func() { waited++ }); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("second Lock: %v, want the context's deadline", err)
	}
	if waited != 1 {
		t.Errorf("waiting called %d times, want 1", waited)
	}
	// Another name is another lock.
	other, err := c.Lock(context.Background(), "debian:12-base", nil)
	if err != nil {
		t.Fatal(err)
	}
	other.Unlock()
}

// allocated is the disk space a file takes.
func allocated(t *testing.T, p string) int64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}
