// Package guest is pyro inside the virtual machine: PID 1's duties (mounts,
// kernel modules, switching to the environment's root filesystem, reaping,
// power-off) and the agent that serves the host's requests.
package guest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pyro-sandbox/pyro/internal/agentproto"
)

// Kernel command-line parameters the host passes to the guest.
const (
	ParamRoot     = "pyro.root"     // block device of the environment's root filesystem (read-only ext4)
	ParamUpper    = "pyro.upper"    // "tmpfs", or the block device holding the writable layer
	ParamProbe    = "pyro.probe"    // power off at once: the accelerator probe
	ParamHostname = "pyro.hostname" // the guest's hostname
	ParamModules  = "pyro.modules"  // comma-separated kernel modules to load (with their dependencies)
	// ParamTemplate: the machine is booting to be snapshotted as a
	// template, and restored many times.
	ParamTemplate = "pyro.template"
)

// BaseModules are the kernel modules every guest loads: virtio over MMIO,
// the block and serial devices, and overlayfs for the writable root.
var BaseModules = []string{"virtio_mmio", "virtio_blk", "virtio_console", "overlay"}

const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Main is the entry point of pyro when the kernel starts it as PID 1 from
// the initramfs. It never returns: when the host hangs up or anything
// fails, it powers the machine off.
func Main() {
	os.Setenv("PATH", defaultPath)
	err := boot()
	if err != nil {
		fmt.Fprintf(os.Stderr, "pyro-init: %v\n", err)
	}
	powerOff()
}

// bootSteps records when each step of init ended; the agent reports them
// in its hello.
var bootSteps []agentproto.BootStep

func step(name string) {
	bootSteps = append(bootSteps, agentproto.BootStep{Step: name, UptimeMs: uptimeMillis()})
}

func boot() error {
	step("init")
	if err := mountEarly(); err != nil {
		return err
	}
	params := parseCmdline(readFile("/proc/cmdline"))
	if _, ok := params[ParamProbe]; ok {
		return nil
	}
	want := BaseModules
	if m, ok := params[ParamModules]; ok {
		want = strings.Split(m, ",")
	}
	if err := loadModules("/lib/modules", want); err != nil {
		return err
	}
	step("modules")
	if root := params[ParamRoot]; root != "" {
		if err := switchRoot(root, params[ParamUpper]); err != nil {
			return err
		}
	}
	step("root")
	go prefetch(prefetchFiles)
	if err := mountLate(); err != nil {
		return err
	}
	hostname := params[ParamHostname]
	if hostname == "" {
		hostname = "pyro"
	}
	unix.Sethostname([]byte(hostname))
	if err := setLinkUp("lo"); err != nil {
		fmt.Fprintf(os.Stderr, "pyro-init: loopback: %v\n", err)
	}

	a := &agent{reaper: newReaper(), env: baseEnv, poweroff: powerOff, inVM: true}
	if _, ok := params[ParamTemplate]; ok {
		// Every machine restored from the template starts with this page
		// cache: fill it with what a first command reads.
		warmUp()
	}
	port, err := findPort(AgentPortName)
	if err != nil {
		return err
	}
	conn, err := os.OpenFile(port, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("opening the agent port: %w", err)
	}
	// The session ends when the host hangs up; the machine then has no
	// reason to live.
	return a.serve(conn)
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

// parseCmdline returns the key=value words of a kernel command line.
func parseCmdline(s string) map[string]string {
	params := map[string]string{}
	for _, w := range strings.Fields(s) {
		k, v, _ := strings.Cut(w, "=")
		params[k] = v
	}
	return params
}

type mountSpec struct {
	source, target, fstype string
	flags                  uintptr
	data                   string
}

func mountAll(specs []mountSpec) error {
	for _, m := range specs {
		if err := os.MkdirAll(m.target, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(m.source, m.target, m.fstype, m.flags, m.data); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mounting %s on %s: %w", m.fstype, m.target, err)
		}
	}
	return nil
}

func mountEarly() error {
	return mountAll([]mountSpec{
		{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755"},
		{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"sysfs", "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	})
}

func mountLate() error {
	return mountAll([]mountSpec{
		{"devpts", "/dev/pts", "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, "gid=5,mode=0620,ptmxmode=0666"},
		{"tmpfs", "/dev/shm", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
		{"tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
		{"cgroup2", "/sys/fs/cgroup", "cgroup2", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	})
}

// loadModules loads the modules named in want and their dependencies,
// in the order of the initramfs's load-order file (dependencies first;
// each line is a name followed by the names it depends on).
func loadModules(dir string, want []string) error {
	data, err := os.ReadFile(filepath.Join(dir, "load-order"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	order, deps := parseLoadOrder(string(data))
	needed := map[string]bool{}
	var need func(string) error
	need = func(name string) error {
		if needed[name] {
			return nil
		}
		d, ok := deps[name]
		if !ok {
			return fmt.Errorf("kernel module %s is not in the initramfs", name)
		}
		needed[name] = true
		for _, dep := range d {
			if err := need(dep); err != nil {
				return err
			}
		}
		return nil
	}
	for _, name := range want {
		if name = strings.TrimSpace(name); name != "" {
			if err := need(name); err != nil {
				return err
			}
		}
	}
	for _, name := range order {
		if !needed[name] {
			continue
		}
		mod, err := os.Open(filepath.Join(dir, name+".ko"))
		if err != nil {
			return fmt.Errorf("kernel module %s: %w", name, err)
		}
		err = unix.FinitModule(int(mod.Fd()), "", 0)
		mod.Close()
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("loading kernel module %s: %w", name, err)
		}
	}
	return nil
}

// parseLoadOrder reads the load-order file: module names in load order,
// and each one's dependencies.
func parseLoadOrder(s string) (order []string, deps map[string][]string) {
	deps = map[string][]string{}
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		order = append(order, f[0])
		deps[f[0]] = f[1:]
	}
	return order, deps
}

// waitForDevice waits for a block device node to appear. Drivers create it
// while their module loads, so this is a safety net, not a poll loop.
func waitForDevice(dev string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		if _, err := os.Stat(dev); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("block device %s did not appear within %s", dev, limit)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// switchRoot mounts the environment's read-only root filesystem under a
// writable overlay and makes it the root of the machine.
func switchRoot(rootDev, upper string) error {
	if err := waitForDevice(rootDev, 10*time.Second); err != nil {
		return err
	}
	const lower, layer, newRoot = "/.pyro/lower", "/.pyro/layer", "/newroot"
	for _, d := range []string{lower, layer, newRoot} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if err := unix.Mount(rootDev, lower, "ext4", unix.MS_RDONLY, ""); err != nil {
		return fmt.Errorf("mounting the root filesystem %s: %w", rootDev, err)
	}
	switch upper {
	case "", "tmpfs":
		if err := unix.Mount("tmpfs", layer, "tmpfs", 0, "mode=0755"); err != nil {
			return fmt.Errorf("mounting the writable layer: %w", err)
		}
	default:
		if err := waitForDevice(upper, 10*time.Second); err != nil {
			return err
		}
		if err := unix.Mount(upper, layer, "ext4", 0, ""); err != nil {
			return fmt.Errorf("mounting the writable layer %s: %w", upper, err)
		}
	}
	if err := mountOverlay(newRoot, lower, layer); err != nil {
		return err
	}
	for _, m := range []string{"/dev", "/proc", "/sys"} {
		if err := os.MkdirAll(newRoot+m, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(m, newRoot+m, "", unix.MS_MOVE, ""); err != nil {
			return fmt.Errorf("moving %s into the new root: %w", m, err)
		}
	}
	if err := moveLayerInto(newRoot, layer); err != nil {
		return err
	}
	if err := unix.Chdir(newRoot); err != nil {
		return err
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("moving the new root to /: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return err
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	// Images without a /workspace still get one.
	return os.MkdirAll(WorkspaceDir, 0o755)
}

// mountOverlay mounts at root the read-only lower directory under a
// writable layer (a mounted file system at layer, which keeps the overlay's
// upper and work directories).
func mountOverlay(root, lower, layer string) error {
	for _, d := range []string{layer + "/upper", layer + "/work"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s/upper,workdir=%s/work", lower, layer, layer)
	if err := unix.Mount("overlay", root, "overlay", 0, opts); err != nil {
		return fmt.Errorf("mounting the root overlay: %w", err)
	}
	return nil
}

// moveLayerInto mounts root's /run (the machine's own tmpfs) and moves the
// writable layer's mount (at layer) to LayerDir under it: out of
// /workspace and out of the overlay, so it can hold the baseline and
// nothing the guest's users do shows there.
func moveLayerInto(root, layer string) error {
	if err := mountAll([]mountSpec{{"tmpfs", root + "/run", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755"}}); err != nil {
		return err
	}
	if err := os.MkdirAll(root+LayerDir, 0o700); err != nil {
		return err
	}
	if err := unix.Mount(layer, root+LayerDir, "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("moving the writable layer into the new root: %w", err)
	}
	return nil
}

func setLinkUp(name string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// powerOff flushes the disks and turns the machine off. As PID 1 it must
// never return: if the power-off call fails, exiting panics the kernel,
// which (with panic=-1 and QEMU's -no-reboot) ends the machine too.
func powerOff() {
	unix.Sync()
	unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	os.Exit(1)
}

// warmUp runs the shell once, so that its binary, the dynamic loader and
// the C library are in the page cache of a template. An environment
// without a shell is fine: the run fails and nothing else changes.
func warmUp() {
	cmd := exec.Command("/bin/sh", "-c", "true")
	cmd.Dir = "/"
	cmd.Env = baseEnv
	cmd.Run()
}

// prefetchFiles are what nearly every first command reads: the dynamic
// loader (glibc's, musl's), its cache, the C library, and the shell that
// runs the MCP server's commands.
var prefetchFiles = []string{
	"/bin/sh",
	"/etc/ld.so.cache",
	"/lib64/ld-linux-x86-64.so.2",
	"/lib/x86_64-linux-gnu/libc.so.6",
	"/usr/lib/x86_64-linux-gnu/libc.so.6",
	"/lib/ld-musl-x86_64.so.1",
}

// prefetch asks the kernel to read files into the page cache while init
// finishes: the reads then overlap init's own work and the host's first
// request instead of stalling the first command (a cold read through
// virtio-blk waits ~1 ms a request under TCG). It only starts reads
// (FADV_WILLNEED) and does not wait for them; missing files are skipped.
func prefetch(paths []string) {
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_WILLNEED)
		f.Close()
	}
}
