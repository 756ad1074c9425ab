// Package hostcompat runs the guest agent on the host instead of in a VM,
// for hosts that cannot boot one, and only when the user asks for it
// (--allow-host-compat). The agent runs as PID 1 of new PID, mount, IPC,
// UTS and network namespaces, with the environment's root filesystem (an
// extracted copy under an overlay whose writable layer is a tmpfs, or a
// workspace's disk on a loop device) as its root. This is far weaker
// isolation than a VM: the kernel is the host's.
package hostcompat

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/pyro-sandbox/pyro/internal/errs"
	"github.com/pyro-sandbox/pyro/internal/fsutil"
	"github.com/pyro-sandbox/pyro/internal/guest"
	"github.com/pyro-sandbox/pyro/internal/proc"
	"github.com/pyro-sandbox/pyro/internal/vmm"
)

// Environment variables of the agent process pyro starts.
const (
	EnvAgent = guest.EnvHostCompat
	EnvRoot  = guest.EnvHostCompatRoot
	EnvWork  = guest.EnvHostCompatWork
	EnvLayer = guest.EnvHostCompatLayer
)

// Backend starts host-compat agents.
type Backend struct {
	// Agent is the static pyro binary to run.
	Agent string
	// RootfsCache holds extracted root filesystems, one per image digest.
	RootfsCache string
}

// Name implements vmm.Backend.
func (b *Backend) Name() string { return "hostcompat" }

// CheckWorkspace says whether a host-compat workspace can run here: its
// layer disk needs a loop device.
func CheckWorkspace() error {
	if err := Check(); err != nil {
		return err
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		return errs.New(errs.Unavailable, "load the loop module (modprobe loop), or install QEMU so pyro can boot a VM",
			"host-compat workspaces need loop devices, and /dev/loop-control is missing")
	}
	return nil
}

// Check says whether host-compat can run here.
func Check() error {
	if os.Geteuid() != 0 {
		return errs.New(errs.Unavailable, "run as root, or install QEMU so pyro can boot a VM",
			"host-compat mode needs root to mount the environment's root filesystem")
	}
	if _, err := debugfs(); err != nil {
		return err
	}
	return nil
}

func debugfs() (string, error) {
	if p, err := exec.LookPath("debugfs"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/debugfs", "/sbin/debugfs"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errs.New(errs.Unavailable, "apt-get install e2fsprogs", "debugfs not found: host-compat mode needs it to unpack the root filesystem")
}

// Start implements vmm.Backend. spec.Disks[0] is the root filesystem image;
// spec.Disks[1], if there is one, is a workspace's layer disk, attached to
// a loop device inside the agent's mount namespace; the kernel and
// initramfs are not used.
func (b *Backend) Start(ctx context.Context, spec vmm.Spec) (vmm.Machine, error) {
	if err := Check(); err != nil {
		return nil, err
	}
	if len(spec.Disks) == 0 {
		return nil, errors.New("host-compat needs the root filesystem image")
	}
	root, err := b.extract(ctx, spec.Disks[0].Path)
	if err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp("", "pyro-hostcompat-")
	if err != nil {
		return nil, err
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		os.Remove(work)
		return nil, err
	}
	// pyro's end is non-blocking, so that a Close or a deadline ends a
	// Read blocked on an agent that never speaks.
	unix.SetNonblock(fds[0], true)
	hostEnd, agentEnd := os.NewFile(uintptr(fds[0]), "agent-host"), os.NewFile(uintptr(fds[1]), "agent")
	m := &machine{agent: hostEnd, work: work, diag: &vmm.Ring{Size: 16 << 10}}
	cmd := exec.Command(b.Agent)
	cmd.Env = []string{EnvAgent + "=1", EnvRoot + "=" + root, EnvWork + "=" + work, "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	if len(spec.Disks) > 1 {
		cmd.Env = append(cmd.Env, EnvLayer+"="+spec.Disks[1].Path)
	}
	cmd.ExtraFiles = []*os.File{agentEnd} // fd 3
	cmd.Stdout, cmd.Stderr = m.diag, m.diag
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNS | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS | syscall.CLONE_NEWNET,
	}
	m.proc, err = proc.Start(cmd)
	agentEnd.Close()
	if err != nil {
		hostEnd.Close()
		os.Remove(work)
		return nil, fmt.Errorf("starting the host-compat agent: %w", err)
	}
	go func() {
		m.proc.Wait()
		m.agent.Close()
		os.Remove(m.work)
	}()
	return m, nil
}

// extract unpacks the ext4 image into the cache once per image, atomically.
func (b *Backend) extract(ctx context.Context, image string) (string, error) {
	dst := filepath.Join(b.RootfsCache, filepath.Base(image))
	if _, err := os.Stat(dst); err == nil {
		return dst, nil
	}
	tool, err := debugfs()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(b.RootfsCache, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(b.RootfsCache, ".extract-")
	if err != nil {
		return "", err
	}
	defer fsutil.RemoveTree(tmp)
	out, err := exec.CommandContext(ctx, tool, "-R", "rdump / "+tmp, image).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("unpacking the root filesystem: %v: %s", err, out)
	}
	if err := os.Rename(tmp, dst); err != nil && !errors.Is(err, os.ErrExist) {
		if _, serr := os.Stat(dst); serr != nil {
			return "", err
		}
	}
	return dst, nil
}

type machine struct {
	agent *os.File
	proc  *proc.Process
	work  string
	diag  *vmm.Ring
}

func (m *machine) Agent() io.ReadWriteCloser { return m.agent }
func (m *machine) Done() <-chan struct{}     { return m.proc.Done() }
func (m *machine) PID() int                  { return m.proc.PID() }
func (m *machine) Wait() error               { return m.proc.Wait() }
func (m *machine) Diagnostics() string       { return m.diag.String() }

// Kill ends the agent; as PID 1 of its namespace, everything it started
// dies with it.
func (m *machine) Kill() error {
	m.proc.Kill()
	return nil
}

func (m *machine) Stop(ctx context.Context) error { return m.Kill() }
