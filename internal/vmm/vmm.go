// Package vmm defines what pyro needs from a virtual machine monitor: boot a
// machine from a spec, hand over the byte stream to its agent, and stop it
// for sure. Backends live in subpackages (qemu; firecracker when a host has
// it). Optional abilities, such as pausing or snapshots, are separate
// interfaces a Machine may also implement, found by type assertion.
package vmm

import (
	"context"
	"io"
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
}

// Backend boots machines.
type Backend interface {
	Name() string
	// Start boots a machine. On error nothing of it is left running.
	Start(ctx context.Context, spec Spec) (Machine, error)
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
