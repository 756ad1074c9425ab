package env

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pyro-sandbox/pyro/internal/errs"
	"github.com/pyro-sandbox/pyro/internal/initramfs"
)

// buildStatic compiles a trivial program with CGO_ENABLED=0 into dir: a
// small stand-in for the pyro binary.
func buildStatic(t *testing.T, dir string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	src := filepath.Join(dir, "main.go")
	if err := os.WriteFile(src, []byte("package main\n\nfunc main() {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "agent")
	cmd := exec.Command(goBin, "build", "-trimpath", "-ldflags=-s -w", "-o", out, src)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOFLAGS=")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building a static test binary: %v\n%s", err, b)
	}
	return out
}

func TestCheckStatic(t *testing.T) {
	static := buildStatic(t, t.TempDir())
	if err := CheckStatic(static); err != nil {
		t.Errorf("CheckStatic of a CGO_ENABLED=0 build: %v", err)
	}

	// A dynamically linked program of the host.
	dynamic := "/bin/true"
	err := CheckStatic(dynamic)
	if err == nil {
		t.Fatalf("CheckStatic(%s) = nil, want a refusal", dynamic)
	}
	if errs.KindOf(err) != errs.Unavailable || !strings.Contains(err.Error(), "dynamically linked") {
		t.Errorf("CheckStatic(%s) = %v (kind %s)", dynamic, err, errs.KindOf(err))
	}
	if !strings.Contains(errs.HintOf(err), "CGO_ENABLED=0") {
		t.Errorf("hint %q does not say how to build a static binary", errs.HintOf(err))
	}

	notELF := filepath.Join(t.TempDir(), "script")
	os.WriteFile(notELF, []byte("#!/bin/sh\necho hi\n"), 0o755)
	for _, p := range []string{notELF, filepath.Join(t.TempDir(), "missing")} {
		if err := CheckStatic(p); errs.KindOf(err) != errs.Unavailable {
			t.Errorf("CheckStatic(%s) = %v (kind %s), want unavailable", p, err, errs.KindOf(err))
		}
	}
}

func TestBootFiles(t *testing.T) {
	c := newCache(t)
	m := install(t, c, "debian:12", "a")
	agent := buildStatic(t, t.TempDir())

	kernel, initrd, err := c.BootFiles(m, agent)
	if err != nil {
		t.Fatal(err)
	}
	if kernel != c.BlobPath(m.Kernel.Digest) {
		t.Errorf("kernel %s, want the kernel blob %s", kernel, c.BlobPath(m.Kernel.Digest))
	}
	if filepath.Dir(initrd) != filepath.Join(c.Dir, "boot") || !strings.HasSuffix(initrd, ".cpio") {
		t.Errorf("initramfs at %s, want boot/<key>.cpio", initrd)
	}

	// The agent archive followed by the modules archive.
	var want bytes.Buffer
	if err := initramfs.WriteAgent(&want, agent); err != nil {
		t.Fatal(err)
	}
	modules, err := os.ReadFile(c.BlobPath(m.Modules.Digest))
	if err != nil {
		t.Fatal(err)
	}
	want.Write(modules)
	got, err := os.ReadFile(initrd)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Errorf("initramfs is %d bytes, want %d (agent archive ++ modules)", len(got), want.Len())
	}
	fi, err := os.Stat(initrd)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o444 {
		t.Errorf("initramfs mode %v, want 0444", fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(filepath.Dir(initrd))
	if len(entries) != 1 {
		t.Errorf("boot/ holds %d entries, want 1 (no temporary files)", len(entries))
	}

	// Built once: the second call returns the same file, marked used.
	lastWeek := time.Now().Add(-6 * 24 * time.Hour)
	os.Chtimes(initrd, lastWeek, lastWeek)
	_, initrd2, err := c.BootFiles(m, agent)
	if err != nil {
		t.Fatal(err)
	}
	if initrd2 != initrd {
		t.Errorf("second BootFiles: %s, want %s", initrd2, initrd)
	}
	if fi2, err := os.Stat(initrd); err != nil || !os.SameFile(fi, fi2) {
		t.Error("the initramfs was rebuilt")
	}

	// Using it marks it used; one unused for long goes when a new one is
	// built, one used lately stays.
	if fi2, _ := os.Stat(initrd); time.Since(fi2.ModTime()) > time.Minute {
		t.Error("using the initramfs did not mark it used")
	}
	stale := filepath.Join(filepath.Dir(initrd), "0123456789abcdef0123456789abcdef.cpio")
	if err := os.WriteFile(stale, []byte("old"), 0o444); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-staleBootFile - time.Hour)
	os.Chtimes(stale, old, old)

	// A new pyro binary is a new initramfs.
	future := time.Now().Add(time.Hour)
	if err := os.Chtimes(agent, future, future); err != nil {
		t.Fatal(err)
	}
	_, initrd3, err := c.BootFiles(m, agent)
	if err != nil {
		t.Fatal(err)
	}
	if initrd3 == initrd {
		t.Error("a changed agent binary got the old initramfs")
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("an initramfs unused for %s is still there: %v", staleBootFile, err)
	}
	if _, err := os.Stat(initrd); err != nil {
		t.Errorf("the initramfs used a moment ago was removed: %v", err)
	}

	// Another environment's modules are another initramfs.
	other := install(t, c, "debian:12-base", "b")
	_, initrd4, err := c.BootFiles(other, agent)
	if err != nil {
		t.Fatal(err)
	}
	if initrd4 == initrd3 {
		t.Error("two modules archives share an initramfs")
	}
}

func TestBootFilesRefuses(t *testing.T) {
	c := newCache(t)
	m := install(t, c, "debian:12", "a")

	_, _, err := c.BootFiles(m, "/bin/true")
	if err == nil || errs.KindOf(err) != errs.Unavailable {
		t.Errorf("BootFiles with a dynamic binary: %v (kind %s), want unavailable", err, errs.KindOf(err))
	}
	_, _, err = c.BootFiles(m, filepath.Join(t.TempDir(), "no-pyro"))
	if err == nil || errs.KindOf(err) != errs.Unavailable {
		t.Errorf("BootFiles with a missing binary: %v (kind %s), want unavailable", err, errs.KindOf(err))
	}
	entries, _ := os.ReadDir(filepath.Join(c.Dir, "boot"))
	if len(entries) != 0 {
		t.Errorf("refused BootFiles left %d files in boot/", len(entries))
	}
}

func TestGuestBuild(t *testing.T) {
	c := newCache(t)
	m := install(t, c, "debian:12", "a")
	bin, err := os.ReadFile(buildStatic(t, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}

	path, err := c.GuestBuild(bin)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, bin) {
		t.Fatalf("the guest build at %s is not the embedded bytes (%v)", path, err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o555 {
		t.Errorf("guest build mode %v, want 0555", fi.Mode().Perm())
	}
	_, initrd, err := c.BootFiles(m, path)
	if err != nil {
		t.Fatal(err)
	}

	// Each use marks it used; that does not make a new initramfs.
	old := time.Now().Add(-time.Hour)
	os.Chtimes(path, old, old)
	path2, err := c.GuestBuild(bin)
	if err != nil || path2 != path {
		t.Fatalf("second GuestBuild = %s, %v; want %s", path2, err, path)
	}
	if fi, _ := os.Stat(path); time.Since(fi.ModTime()) > time.Minute {
		t.Error("GuestBuild did not mark the build used")
	}
	if _, initrd2, err := c.BootFiles(m, path); err != nil || initrd2 != initrd {
		t.Errorf("BootFiles after a use of the guest build = %s, %v; want %s", initrd2, err, initrd)
	}

	// On the host (host-compat), pyro runs rather than its guest build.
	if got := c.HostAgent(path, "/usr/local/bin/pyro"); got != "/usr/local/bin/pyro" {
		t.Errorf("HostAgent(guest build) = %s, want pyro", got)
	}
	if got := c.HostAgent(path, ""); got != path {
		t.Errorf("HostAgent(guest build) from a program that is not pyro = %s, want the build", got)
	}
	if got := c.HostAgent("/opt/pyro", "/usr/local/bin/pyro"); got != "/opt/pyro" {
		t.Errorf("HostAgent(another binary) = %s, want it unchanged", got)
	}

	// Removed under a booting pyro that does not carry it (a test binary
	// embeds none): a clear error, not "reinstall pyro" alone.
	gone := filepath.Join(filepath.Dir(path), guestBuildPrefix+"00000000000000000000000000000000")
	if _, _, err := c.BootFiles(m, gone); errs.KindOf(err) != errs.Unavailable || !strings.Contains(err.Error(), "was removed") {
		t.Errorf("BootFiles of a removed guest build: %v", err)
	}

	// A truncated file (a crash before the rename cannot leave one, a
	// hand can) is written again.
	os.Chmod(path, 0o644)
	os.WriteFile(path, bin[:10], 0o555)
	if _, err := c.GuestBuild(bin); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, bin) {
		t.Error("a truncated guest build was not replaced")
	}

	// Another build is another file; the one unused for long goes when a
	// new initramfs is built, the one in use stays.
	other := append(append([]byte(nil), bin...), 0)
	otherPath, err := c.GuestBuild(other)
	if err != nil || otherPath == path {
		t.Fatalf("GuestBuild of other bytes = %s, %v", otherPath, err)
	}
	stale := time.Now().Add(-staleBootFile - time.Hour)
	os.Chtimes(otherPath, stale, stale)
	os.Chtimes(path, stale, stale)
	if _, _, err := c.BootFiles(install(t, c, "debian:12-base", "b"), path); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(otherPath); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a guest build unused for %s is still there: %v", staleBootFile, err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("the guest build being booted was removed: %v", err)
	}
}
