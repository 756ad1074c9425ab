//go:build kerneltest

package kernel

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// These tests read a real Debian kernel package, extracted with
// dpkg-deb -x linux-image-*-cloud-amd64_*.deb DIR. Run them with
//
//	PYRO_TEST_KERNEL_DEB_DIR=DIR go test -tags kerneltest ./internal/kernel
//
// DIR defaults to /tmp/k/x.

// realKernel returns the extracted package's root, failing the test when
// it is missing rather than skipping: this build tag asks for these tests.
func realKernel(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("PYRO_TEST_KERNEL_DEB_DIR")
	if dir == "" {
		dir = "/tmp/k/x"
	}
	if _, err := os.Stat(filepath.Join(dir, "boot")); err != nil {
		t.Fatalf("no extracted kernel package at %s (%v); extract linux-image-*-cloud-amd64 with dpkg-deb -x and set PYRO_TEST_KERNEL_DEB_DIR to the directory", dir, err)
	}
	return dir
}

func realFile(t *testing.T, pattern string) string {
	t.Helper()
	matches, err := filepath.Glob(filepath.Join(realKernel(t), pattern))
	if err != nil || len(matches) != 1 {
		t.Fatalf("want one file matching %s, found %v (%v)", pattern, matches, err)
	}
	return matches[0]
}

func TestRealExtractVmlinux(t *testing.T) {
	f, err := os.Open(realFile(t, "boot/vmlinuz-*"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	vmlinux, err := ExtractVmlinux(f, fi.Size())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("vmlinuz %d bytes -> vmlinux %d bytes", fi.Size(), len(vmlinux))
	if !HasPVHNote(vmlinux) {
		t.Error("vmlinux has no PVH entry note; QEMU cannot boot it directly")
	}
}

func TestRealConfig(t *testing.T) {
	f, err := os.Open(realFile(t, "boot/config-*"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, err := ReadConfig(f)
	if err != nil {
		t.Fatal(err)
	}
	if c.HZ != 250 {
		t.Errorf("HZ = %d, want Debian's 250", c.HZ)
	}
	for _, name := range []string{"CONFIG_PVH", "CONFIG_KERNEL_LZ4"} {
		if v, _ := c.Lookup(name); v != "y" {
			t.Errorf("%s = %q, want y", name, v)
		}
	}
}

func TestRealResolveModules(t *testing.T) {
	dir := realFile(t, "lib/modules/*")
	want := []string{
		"virtio_ring", "virtio", "virtio_mmio", "virtio_blk", "virtio_console", "overlay",
		"failover", "net_failover", "virtio_net", "virtio_rng",
	}
	// Asked for leaves first, so the order has to come from depends=.
	leavesFirst := slices.Clone(want)
	slices.Reverse(leavesFirst)
	mods, err := ResolveModules(dir, leavesFirst)
	if err != nil {
		t.Fatal(err)
	}
	order := names(mods)
	t.Logf("load order: %v", order)
	if len(order) != len(want) {
		t.Errorf("got %d modules, want %d", len(order), len(want))
	}
	for _, name := range want {
		if !slices.Contains(order, name) {
			t.Errorf("%s missing from %v", name, order)
		}
	}
	for _, pair := range [][2]string{
		{"virtio_ring", "virtio"}, {"virtio", "virtio_mmio"}, {"virtio", "virtio_blk"},
		{"failover", "net_failover"}, {"net_failover", "virtio_net"}, {"virtio", "virtio_rng"},
	} {
		if slices.Index(order, pair[0]) > slices.Index(order, pair[1]) {
			t.Errorf("%s loads after %s: %v", pair[0], pair[1], order)
		}
	}
}

// TestRealModinfoNames checks what indexModules relies on: every module's
// modinfo name= is its file name with '-' spelt '_'.
func TestRealModinfoNames(t *testing.T) {
	dir := realFile(t, "lib/modules/*")
	n := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !strings.HasSuffix(path, ".ko") {
			return err
		}
		n++
		m, err := readModule(path)
		if err != nil {
			return err
		}
		if want := moduleName(strings.TrimSuffix(d.Name(), ".ko")); m.Name != want {
			t.Errorf("%s: name=%s, want %s", path, m.Name, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d modules", n)
}
