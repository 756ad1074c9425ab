// Package vmm defines what pyro needs from a virtual machine monitor: boot a
// machine from a spec, hand over the byte stream to its agent, and stop it
// for sure. Backends live in subpackages (qemu; firecracker when a host has
// it). Optional abilities, such as pausing or snapshots, are separate
// interfaces a Machine may also implement, found by type assertion.
package vmm

import (
	"context"
	"io"
	"os"
)

// Accelerator is how guest code runs.
type Accelerator string

const (
	// KVM runs guest code on the CPU through /dev/kvm.
	KVM Accelerator = "kvm"
	// TCG is QEMU's binary translator: slow, but works anywhere.
	TCG Accelerator = "tcg"
)

// Disk is a block device of the machine, in order: the first is the
// guest's /dev/vda.
type Disk struct {
	Path     string
	ReadOnly bool
}

// Spec says what to boot.
type Spec struct {
	// ID names the machine in logs and process titles.
	ID string
	// Kernel is an uncompressed ELF vmlinux with a PVH entry point or a bzImage.
	Kernel string
	// Initrd is an uncompressed cpio archive (or several concatenated).
	Initrd string
	// Cmdline is appended to the backend's own kernel parameters.
	Cmdline []string
	VCPUs   int
	MemMiB  int
	Disks   []Disk
	Accel   Accelerator
	// Console receives what the guest writes to its serial console. It must
	// not block; pyro passes a bounded ring buffer.
	Console io.Writer
	// TSCKHz and LoopsPerJiffy, when set, are passed to the guest kernel
	// under TCG, where calibrating them hangs some boots.
	TSCKHz        int64
	LoopsPerJiffy int64
	// Memory, when set, backs the guest's RAM with a file instead of
	// anonymous memory: how templates are made and restored.
	Memory *MemoryFile
	// Restore, when set, starts the machine from the device state in this
	// file, saved by a Snapshotter, instead of booting its kernel. Memory
	// must name the file the saved machine's RAM was shared into.
	Restore *os.File
}

// MemoryFile is a file holding a guest's RAM.
type MemoryFile struct {
	Path string
	// Shared: the guest writes its RAM to the file (a template being
	// made). Otherwise the file is mapped copy-on-write and never changes
	// (machines restored from it).
	Shared bool
}

// Backend boots machines.
type Backend interface {
	Name() string
	// Start boots a machine. On error nothing of it is left running.
	Start(ctx context.Context, spec Spec) (Machine, error)
}

// Templater is a Backend that can restore machines from templates: a
// machine booted once to agent-ready, snapshotted, then restored for each
// new machine in a fraction of a boot.
type Templater interface {
	// TemplateKey names what a template of spec depends on (the VMM's
	// build, the machine's devices, kernel, initramfs and command line):
	// a snapshot restores only into a machine of the same key.
	TemplateKey(spec Spec) (string, error)
}

// Snapshotter is a Machine that can save its device state while it runs.
// The machine must have been started with a shared Memory file; that file
// and the saved state together restore it (Spec.Restore). The machine is
// stopped once the state is saved.
type Snapshotter interface {
	SaveState(ctx context.Context, to *os.File) error
}

// Machine is one running VM.
type Machine interface {
	// Agent is the byte stream to the agent in the guest.
	Agent() io.ReadWriteCloser
	// Done is closed once the VMM process has exited and been reaped.
	Done() <-chan struct{}
	// Wait returns the VMM's exit error once Done is closed.
	Wait() error
	// Kill stops the VMM at once and waits until it is gone.
	Kill() error
	// Stop asks the VMM to end, kills it when ctx ends first, and waits
	// until it is gone.
	Stop(ctx context.Context) error
	// PID is the VMM process id.
	PID() int
	// Diagnostics returns the VMM's own error output (bounded), for errors.
	Diagnostics() string
}
