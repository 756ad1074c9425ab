// Package qemu runs machines with QEMU's microvm machine type: no firmware,
// virtio-mmio devices, direct kernel boot.
package qemu

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/pyro-sandbox/pyro/internal/proc"
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
		diag:  &vmm.Ring{Size: 16 << 10},
	}
	cmd := exec.Command(bin, args...)
	cmd.ExtraFiles = []*os.File{agentVM, consoleVM} // fdAgent, fdConsole
	cmd.Stdin = nil
	cmd.Stdout = m.diag
	cmd.Stderr = m.diag
	// QEMU dies with pyro, even when pyro is killed with SIGKILL, and sits
	// in its own process group: a Ctrl-C at the terminal reaches pyro,
	// which then stops the machine in order.
	m.proc, err = proc.Start(cmd)
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
		m.proc.Wait()
		m.agent.Close()
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
	proc  *proc.Process
	diag  *vmm.Ring
}

func (m *machine) Agent() io.ReadWriteCloser { return m.agent }
func (m *machine) Done() <-chan struct{}     { return m.proc.Done() }
func (m *machine) PID() int                  { return m.proc.PID() }
func (m *machine) Wait() error               { return m.proc.Wait() }

func (m *machine) Kill() error {
	m.proc.Kill()
	return nil
}

// Stop asks QEMU to quit (SIGTERM) and kills it if ctx ends first.
func (m *machine) Stop(ctx context.Context) error {
	m.proc.Signal(syscall.SIGTERM)
	select {
	case <-m.proc.Done():
	case <-ctx.Done():
		m.proc.Kill()
	}
	return nil
}

// Diagnostics returns QEMU's own output, trimmed.
func (m *machine) Diagnostics() string {
	return strings.TrimSpace(m.diag.String())
}
