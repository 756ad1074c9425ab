package guest

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Environment of the host-compat agent (see package vmm/hostcompat).
const (
	EnvHostCompat     = "PYRO_HOSTCOMPAT_AGENT" // set: this process is a host-compat agent
	EnvHostCompatRoot = "PYRO_HOSTCOMPAT_ROOT"  // the extracted root filesystem
	EnvHostCompatWork = "PYRO_HOSTCOMPAT_WORK"  // an empty directory to stage mounts in
	// EnvHostCompatLayer names a workspace's layer disk (an ext4 image): it
	// holds the writable layer, as in a VM. Unset: a tmpfs, gone at exit.
	EnvHostCompatLayer = "PYRO_HOSTCOMPAT_LAYER"
)

// HostCompatMain is the agent on the host, as PID 1 of fresh namespaces:
// it builds a root from the environment's filesystem under an overlay (its
// writable layer a tmpfs, or a workspace's disk), pivots into it and
// serves the host on file descriptor 3.
func HostCompatMain() {
	if err := hostCompat(); err != nil {
		fmt.Fprintf(os.Stderr, "pyro host-compat agent: %v\n", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func hostCompat() error {
	lower, work := os.Getenv(EnvHostCompatRoot), os.Getenv(EnvHostCompatWork)
	if lower == "" || work == "" {
		return fmt.Errorf("%s and %s must be set", EnvHostCompatRoot, EnvHostCompatWork)
	}
	// Nothing mounted here may reach the host's mount table.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making mounts private: %w", err)
	}
	if err := unix.Mount("tmpfs", work, "tmpfs", 0, "mode=0755"); err != nil {
		return fmt.Errorf("mounting a staging tmpfs: %w", err)
	}
	root, layer := filepath.Join(work, "root"), filepath.Join(work, "layer")
	for _, d := range []string{root, layer} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if image := os.Getenv(EnvHostCompatLayer); image != "" {
		loop, err := attachLoop(image)
		if err != nil {
			return fmt.Errorf("attaching the workspace disk %s: %w", image, err)
		}
		err = unix.Mount(loop.Name(), layer, "ext4", unix.MS_NOSUID|unix.MS_NODEV, "")
		loop.Close() // the mount holds the device now
		if err != nil {
			return fmt.Errorf("mounting the workspace disk %s: %w", image, err)
		}
	} else if err := unix.Mount("tmpfs", layer, "tmpfs", 0, "mode=0755"); err != nil {
		return fmt.Errorf("mounting the writable layer: %w", err)
	}
	if err := mountOverlay(root, lower, layer); err != nil {
		return err
	}
	err := mountAll([]mountSpec{
		{"proc", root + "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"sysfs", root + "/sys", "sysfs", unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"tmpfs", root + "/dev", "tmpfs", unix.MS_NOSUID, "mode=0755"},
	})
	if err != nil {
		return err
	}
	// Only the harmless devices, bound from the host.
	for _, d := range []string{"null", "zero", "full", "random", "urandom", "tty"} {
		target := root + "/dev/" + d
		if err := os.WriteFile(target, nil, 0o666); err != nil {
			return err
		}
		if err := unix.Mount("/dev/"+d, target, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("binding /dev/%s: %w", d, err)
		}
	}
	if err := mountAll([]mountSpec{
		{"devpts", root + "/dev/pts", "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620"},
	}); err != nil {
		return err
	}
	os.Symlink("pts/ptmx", root+"/dev/ptmx")
	// As in a VM: the workspace operations keep the baseline there.
	if err := moveLayerInto(root, layer); err != nil {
		return err
	}
	// pivot_root rather than chroot: the old root is detached entirely.
	if err := unix.Chdir(root); err != nil {
		return err
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detaching the host's root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	if err := mountAll([]mountSpec{
		{"tmpfs", "/dev/shm", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
		{"tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
	}); err != nil {
		return err
	}
	if err := os.MkdirAll(WorkspaceDir, 0o755); err != nil {
		return err
	}
	unix.Sethostname([]byte("pyro"))
	setLinkUp("lo")
	conn := os.NewFile(3, "agent")
	// Power-off ends this process: as PID 1 of its namespaces, that ends
	// every process in them and releases the mounts and the loop device.
	// Only the layer's file system is flushed: sync(2) would flush the
	// host's.
	a := &agent{reaper: newReaper(), env: baseEnv, poweroff: func() {
		if f, err := os.Open(LayerDir); err == nil {
			unix.Syncfs(int(f.Fd()))
			f.Close()
		}
		os.Exit(0)
	}}
	return a.serve(conn)
}

// layerLock holds the workspace disk open, and its lock, for the agent's
// life.
var layerLock *os.File

// attachLoop attaches image to a free loop device and returns the device,
// open. The device detaches itself when its last user goes
// (LO_FLAGS_AUTOCLEAR): so the caller mounts it before closing it, and it
// goes when this mount namespace ends with the agent.
func attachLoop(image string) (*os.File, error) {
	img, err := os.OpenFile(image, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	// Two agents on one disk would corrupt it (QEMU locks its images the
	// same way). The lock lives as long as this process: layerLock keeps
	// the file open.
	if err := unix.Flock(int(img.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		img.Close()
		if err == unix.EWOULDBLOCK {
			return nil, fmt.Errorf("the disk is in use by another agent of this workspace")
		}
		return nil, fmt.Errorf("locking the disk: %w", err)
	}
	layerLock = img
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("host-compat workspaces need loop devices: %w", err)
	}
	defer ctl.Close()
	// Another process may take the free device between the two calls;
	// then ask again.
	for range 8 {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return nil, fmt.Errorf("finding a free loop device: %w", err)
		}
		dev := fmt.Sprintf("/dev/loop%d", n)
		f, err := os.OpenFile(dev, os.O_RDWR, 0)
		if err != nil {
			return nil, err
		}
		err = configureLoop(f, img)
		if err == nil {
			return f, nil
		}
		f.Close()
		if err != unix.EBUSY {
			return nil, fmt.Errorf("configuring %s: %w", dev, err)
		}
	}
	return nil, fmt.Errorf("no free loop device")
}

// configureLoop makes loop read and write img, and detach itself when its
// last user goes. LOOP_CONFIGURE (Linux 5.8) does it in one call; older
// kernels take LOOP_SET_FD, then the flags.
func configureLoop(loop, img *os.File) error {
	cfg := unix.LoopConfig{Fd: uint32(img.Fd())}
	cfg.Info.Flags = unix.LO_FLAGS_AUTOCLEAR
	err := unix.IoctlLoopConfigure(int(loop.Fd()), &cfg)
	if err != unix.EINVAL && err != unix.ENOTTY {
		return err
	}
	if err := unix.IoctlSetInt(int(loop.Fd()), unix.LOOP_SET_FD, int(img.Fd())); err != nil {
		return err
	}
	if err := unix.IoctlLoopSetStatus64(int(loop.Fd()), &cfg.Info); err != nil {
		unix.IoctlSetInt(int(loop.Fd()), unix.LOOP_CLR_FD, 0)
		return err
	}
	return nil
}
