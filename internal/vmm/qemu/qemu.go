// Package qemu runs machines with QEMU's microvm machine type: no firmware,
// virtio-mmio devices, direct kernel boot.
package qemu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pyro-sandbox/pyro/internal/vmm"
)

// Binary is the QEMU system emulator pyro runs.
const Binary = "qemu-system-x86_64"

// Backend is the QEMU backend. The zero value looks QEMU up in PATH.
type Backend struct {
	// Path of the QEMU binary; empty means look up Binary in PATH.
	Path string
}

// Name implements vmm.Backend.
func (b *Backend) Name() string { return "qemu" }

// Start implements vmm.Backend.
func (b *Backend) Start(ctx context.Context, spec vmm.Spec) (vmm.Machine, error) {
	args, err := Args(spec)
	if err != nil {
		return nil, err
	}
	bin := b.Path
	if bin == "" {
		if bin, err = exec.LookPath(Binary); err != nil {
			return nil, fmt.Errorf("%s not found: install QEMU (on Debian: apt-get install qemu-system-x86)", Binary)
		}
	}
	agentHost, agentVM, err := socketPair()
	if err != nil {
		return nil, err
	}
	consoleHost, consoleVM, err := socketPair()
	if err != nil {
		agentHost.Close()
		agentVM.Close()
		return nil, err
	}
	m := &machine{
		agent: agentHost,
		done:  make(chan struct{}),
		diag:  &vmm.Ring{Size: 16 << 10},
	}
	cmd := exec.Command(bin, args...)
	cmd.ExtraFiles = []*os.File{agentVM, consoleVM} // fdAgent, fdConsole
	cmd.Stdin = nil
	cmd.Stdout = m.diag
	cmd.Stderr = m.diag
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// QEMU dies with pyro, even when pyro is killed with SIGKILL.
		Pdeathsig: syscall.SIGKILL,
		// Its own process group: a Ctrl-C at the terminal reaches pyro,
		// which then stops the machine in order.
		Setpgid: true,
	}
	started := make(chan error, 1)
	go m.run(cmd, started)
	err = <-started
	agentVM.Close()
	consoleVM.Close()
	if err != nil {
		agentHost.Close()
		consoleHost.Close()
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	console := spec.Console
	if console == nil {
		console = io.Discard
	}
	go func() {
		io.Copy(console, consoleHost)
		consoleHost.Close()
	}()
	go func() {
		<-m.done
		consoleHost.Close()
	}()
	return m, nil
}

func socketPair() (host, vm *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), "vmm-host"), os.NewFile(uintptr(fds[1]), "vmm-guest"), nil
}

type machine struct {
	agent *os.File
	cmd   *exec.Cmd
	diag  *vmm.Ring

	done    chan struct{}
	waitErr error
	once    sync.Once
}

// run starts and waits for QEMU on one locked OS thread: the parent-death
// signal is tied to the thread that forked, so that thread must outlive
// the child.
func (m *machine) run(cmd *exec.Cmd, started chan<- error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := cmd.Start(); err != nil {
		started <- err
		return
	}
	m.cmd = cmd
	started <- nil
	m.waitErr = cmd.Wait()
	m.agent.Close()
	close(m.done)
}

func (m *machine) Agent() io.ReadWriteCloser { return m.agent }
func (m *machine) Done() <-chan struct{}     { return m.done }
func (m *machine) PID() int                  { return m.cmd.Process.Pid }

func (m *machine) Wait() error {
	<-m.done
	return m.waitErr
}

func (m *machine) Kill() error {
	select {
	case <-m.done:
		return nil
	default:
	}
	m.cmd.Process.Signal(syscall.SIGKILL)
	<-m.done
	return nil
}

func (m *machine) Stop(ctx context.Context) error {
	select {
	case <-m.done:
		return nil
	default:
	}
	m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
		return nil
	case <-ctx.Done():
		return m.Kill()
	}
}

// Diagnostics returns QEMU's own output, trimmed.
func (m *machine) Diagnostics() string {
	return strings.TrimSpace(m.diag.String())
}

// ExitDescription says how QEMU ended, for errors.
func ExitDescription(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.String()
	}
	if err == nil {
		return "exited"
	}
	return err.Error()
}

var _ = time.Second
