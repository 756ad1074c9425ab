package guest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// A workspace disk attaches to a loop device that mounts, only one agent
// at a time may hold it, and the device detaches itself once unused.
func TestAttachLoop(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatalf("this test needs root (it attaches a loop device and mounts it); run it as root, e.g. sudo go test ./internal/guest/")
	}
	img := filepath.Join(t.TempDir(), "disk.ext4")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 64<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4 (install e2fsprogs): %v: %s", err, out)
	}
	t.Cleanup(func() {
		if layerLock != nil {
			layerLock.Close()
			layerLock = nil
		}
	})

	loop, err := attachLoop(img)
	if err != nil {
		t.Fatal(err)
	}
	dev := loop.Name()
	mnt := t.TempDir()
	if err := unix.Mount(dev, mnt, "ext4", 0, ""); err != nil {
		loop.Close()
		t.Fatalf("mounting %s: %v", dev, err)
	}
	loop.Close() // the mount holds the device now
	if err := os.WriteFile(filepath.Join(mnt, "f"), []byte("x"), 0o644); err != nil {
		t.Error(err)
	}

	// A second agent on the same disk is refused.
	if l, err := attachLoop(img); err == nil {
		l.Close()
		t.Error("a second attach of a locked disk succeeded")
	} else if !strings.Contains(err.Error(), "in use") {
		t.Errorf("second attach: %v, want the disk in use", err)
	}

	if err := unix.Unmount(mnt, 0); err != nil {
		t.Fatal(err)
	}
	backing := "/sys/block/" + filepath.Base(dev) + "/loop/backing_file"
	if b, err := os.ReadFile(backing); err == nil {
		t.Errorf("%s still attached to %s after its last user went", dev, strings.TrimSpace(string(b)))
	}
}
