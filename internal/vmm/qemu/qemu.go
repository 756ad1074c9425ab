// Package qemu runs machines with QEMU's microvm machine type: no firmware,
// virtio-mmio devices, direct kernel boot.
package qemu

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
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
	var qmpVM *os.File
	if spec.Memory != nil {
		if m.qmp, qmpVM, err = socketPair(); err != nil {
			agentHost.Close()
			agentVM.Close()
			consoleHost.Close()
			consoleVM.Close()
			return nil, err
		}
		cmd.ExtraFiles = append(cmd.ExtraFiles, qmpVM) // fdQMP
		if spec.Restore != nil {
			cmd.ExtraFiles = append(cmd.ExtraFiles, spec.Restore) // fdState
		}
	}
	// QEMU dies with pyro, even when pyro is killed with SIGKILL, and sits
	// in its own process group: a Ctrl-C at the terminal reaches pyro,
	// which then stops the machine in order.
	m.proc, err = proc.Start(cmd)
	agentVM.Close()
	consoleVM.Close()
	if qmpVM != nil {
		qmpVM.Close()
	}
	if err != nil {
		agentHost.Close()
		consoleHost.Close()
		if m.qmp != nil {
			m.qmp.Close()
		}
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
		if m.qmp != nil {
			m.qmp.Close()
		}
	}()
	if spec.Restore != nil {
		if err := m.loadState(ctx); err != nil {
			m.Kill()
			return nil, fmt.Errorf("restoring the machine: %w (%s)", err, m.Diagnostics())
		}
	}
	return m, nil
}

// ignoreShared is the migration capability that leaves RAM in a shared
// file out of a saved state: saving takes milliseconds, and a restore maps
// the file instead of reading the RAM back in.
var ignoreShared = map[string]any{"capabilities": []map[string]any{{"capability": "x-ignore-shared", "state": true}}}

// migrationMonitor connects to the machine's QMP and turns on the
// x-ignore-shared capability, which both ends of a snapshot need.
func (m *machine) migrationMonitor(ctx context.Context) (*qmp, error) {
	if m.qmp == nil {
		return nil, fmt.Errorf("this machine has no QMP channel")
	}
	q, err := newQMP(m.qmp)
	if err != nil {
		return nil, err
	}
	err = q.handshake(ctx)
	if err == nil {
		_, err = q.execute(ctx, "migrate-set-capabilities", ignoreShared, nil)
	}
	if err != nil {
		q.close()
		return nil, err
	}
	return q, nil
}

// loadState starts the restore of a machine started with -incoming defer
// from the state file passed as fdState. QEMU loads it and runs the
// machine; a state it cannot load makes it exit.
func (m *machine) loadState(ctx context.Context) error {
	q, err := m.migrationMonitor(ctx)
	if err != nil {
		return err
	}
	defer q.close()
	_, err = q.execute(ctx, "migrate-incoming", map[string]string{"uri": fmt.Sprintf("fd:%d", fdState)}, nil)
	return err
}

// socketPair returns a connected pair: pyro's end, non-blocking so that
// Go's poller serves it (a Close or a deadline then ends a Read blocked
// on a guest that never speaks), and QEMU's end, blocking, as a child
// expects its descriptors.
func socketPair() (host, vm *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		unix.Close(fds[1])
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), "vmm-host"), os.NewFile(uintptr(fds[1]), "vmm-guest"), nil
}

type machine struct {
	agent *os.File
	qmp   *os.File // the host end of QMP, for a machine making a template
	proc  *proc.Process
	diag  *vmm.Ring
}

// SaveState implements vmm.Snapshotter.
func (m *machine) SaveState(ctx context.Context, to *os.File) error {
	q, err := m.migrationMonitor(ctx)
	if err != nil {
		return err
	}
	defer q.close()
	return q.migrateTo(ctx, to)
}

// TemplateKey implements vmm.Templater: QEMU's binary (path, size and
// modification time: an upgrade changes them) and every argument but the
// machine's name, the template's own files and the TSC rate and loop
// count given to the kernel: they only steer its boot, which a restored
// machine skips, and a host's measure of them may vary.
func (b *Backend) TemplateKey(spec vmm.Spec) (string, error) {
	bin := b.Path
	if bin == "" {
		var err error
		if bin, err = exec.LookPath(Binary); err != nil {
			return "", err
		}
	}
	// One binary, however PATH reaches it.
	if real, err := filepath.EvalSymlinks(bin); err == nil {
		bin = real
	}
	fi, err := os.Stat(bin)
	if err != nil {
		return "", err
	}
	accel := spec.Accel
	spec.ID, spec.Memory, spec.Restore, spec.Console = "", nil, nil, nil
	spec.TSCKHz, spec.LoopsPerJiffy = 0, 0
	args, err := Args(spec)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%d\n%d\n", bin, fi.Size(), fi.ModTime().UnixNano())
	for _, a := range args {
		fmt.Fprintf(h, "%s\n", a)
	}
	if accel == vmm.KVM {
		// Under KVM the guest saw the host's CPU (-cpu host): another CPU,
		// microcode or kernel may not offer what it took for granted.
		fmt.Fprintf(h, "%s\n", hostCPUIdentity())
	}
	return hex.EncodeToString(h.Sum(nil))[:32], nil
}

// hostCPUIdentity is what a KVM guest's CPU depends on: the first
// processor's model, microcode and flags, and the host kernel's release.
func hostCPUIdentity() string {
	var b strings.Builder
	data, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(data), "\n") {
		if strings.TrimSpace(line) == "" {
			break // first processor only
		}
		k, _, _ := strings.Cut(line, ":")
		switch strings.TrimSpace(k) {
		case "model name", "microcode", "flags":
			b.WriteString(line + "\n")
		}
	}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		b.WriteString(unix.ByteSliceToString(u.Release[:]))
	}
	return b.String()
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
