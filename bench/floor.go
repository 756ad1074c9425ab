package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/pyro-sandbox/pyro/internal/env"
	"github.com/pyro-sandbox/pyro/internal/host"
	"github.com/pyro-sandbox/pyro/internal/initramfs"
	"github.com/pyro-sandbox/pyro/internal/vmm"
	"github.com/pyro-sandbox/pyro/internal/vmm/qemu"
)

// floor boots the environment's kernel with a minimal initramfs whose init
// powers off at once, with the QEMU arguments pyro itself uses.
type floor struct {
	dir       string
	spec      vmm.Spec
	initrdKiB int64
}

func newFloor(pyroBin string) (*floor, error) {
	cache := &env.Cache{Dir: env.DefaultCacheDir()}
	m, err := cache.Installed("debian:12")
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "pyro-bench-floor-")
	if err != nil {
		return nil, err
	}
	f := &floor{dir: dir}
	initBin := filepath.Join(dir, "init")
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", initBin, "./bench/floorinit")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building the floor init: %v\n%s", err, out)
	}
	initrd := filepath.Join(dir, "floor.cpio")
	out, err := os.Create(initrd)
	if err != nil {
		return nil, err
	}
	w := initramfs.NewWriter(out)
	fi, _ := os.Stat(initBin)
	bin, _ := os.Open(initBin)
	err = w.AddDir("dev", 0o755)
	if err == nil {
		err = w.AddCharDevice("dev/console", 0o600, 5, 1)
	}
	if err == nil {
		err = w.AddFile("init", 0o755, bin, fi.Size())
	}
	bin.Close()
	if err == nil {
		err = w.Close()
	}
	out.Close()
	if err != nil {
		return nil, err
	}
	if st, err := os.Stat(initrd); err == nil {
		f.initrdKiB = st.Size() >> 10
	}
	accel := vmm.TCG
	if a := os.Getenv("PYRO_ACCEL"); a == "kvm" {
		accel = vmm.KVM
	}
	f.spec = vmm.Spec{
		ID: "bench-floor", Kernel: cache.BlobPath(m.Kernel.Digest), Initrd: initrd,
		VCPUs: 1, MemMiB: 1024, Accel: accel,
		Disks: []vmm.Disk{{Path: cache.BlobPath(m.Rootfs.Digest), ReadOnly: true}},
	}
	if accel == vmm.TCG {
		f.spec.TSCKHz = host.TSCKHz()
		f.spec.LoopsPerJiffy = f.spec.TSCKHz * 1000 / int64(m.Kernel.HZ)
	}
	return f, nil
}

// boot returns the time from QEMU's start to its exit.
func (f *floor) boot() (time.Duration, error) {
	start := time.Now()
	if err := powerCycle(f.spec); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// powerCycle starts a floor machine and waits for its init to power it
// off.
func powerCycle(spec vmm.Spec) error {
	m, err := (&qemu.Backend{}).Start(context.Background(), spec)
	if err != nil {
		return err
	}
	select {
	case <-m.Done():
	case <-time.After(2 * time.Minute):
		m.Kill()
		return fmt.Errorf("the floor guest did not power off")
	}
	if err := m.Wait(); err != nil {
		return fmt.Errorf("floor QEMU: %v %s", err, m.Diagnostics())
	}
	return nil
}

// initUptime boots the floor with floor_report=1, whose init writes its
// uptime to the console, and returns that uptime: when the kernel started
// init, plus the floor init's own (tiny) Go start. Not a timed boot.
func (f *floor) initUptime() (time.Duration, error) {
	spec := f.spec
	console := &vmm.Ring{Size: 4 << 10}
	spec.Console = console
	spec.Cmdline = append(append([]string(nil), spec.Cmdline...), "floor_report=1")
	if err := powerCycle(spec); err != nil {
		return 0, err
	}
	// The console is copied by a goroutine that ends with QEMU's socket.
	for deadline := time.Now().Add(time.Second); !strings.Contains(console.String(), "\n") && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	out := console.String()
	var secs float64
	i := strings.Index(out, "floor-uptime ")
	if i < 0 {
		return 0, fmt.Errorf("the floor init reported no uptime: %q", out)
	}
	if _, err := fmt.Sscanf(out[i:], "floor-uptime %f", &secs); err != nil {
		return 0, fmt.Errorf("the floor init's uptime %q: %v", out[i:], err)
	}
	return time.Duration(secs * float64(time.Second)), nil
}

func (f *floor) close() { os.RemoveAll(f.dir) }
