// Package proc starts child processes that cannot outlive pyro: each gets
// a parent-death signal (SIGKILL) and its own process group, and is killed
// as a group. The parent-death signal is tied to the OS thread that forked
// the child, so that thread stays locked until the child is reaped.
package proc

import (
	"context"
	"os/exec"
	"runtime"
	"syscall"
)

// Process is a started child.
type Process struct {
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
}

// Start starts cmd with a parent-death signal, in its own process group.
// cmd.SysProcAttr may carry other attributes (namespaces); those two are
// set here.
func Start(cmd *exec.Cmd) (*Process, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	cmd.SysProcAttr.Setpgid = true
	p := &Process{cmd: cmd, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return p, nil
}

// Run starts cmd, waits for it, and kills its whole process group when ctx
// ends first.
func Run(ctx context.Context, cmd *exec.Cmd) error {
	p, err := Start(cmd)
	if err != nil {
		return err
	}
	select {
	case <-p.done:
		return p.waitErr
	case <-ctx.Done():
		p.Kill()
		return ctx.Err()
	}
}

// PID is the child's process id (and its process group's).
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Done is closed once the child has been reaped.
func (p *Process) Done() <-chan struct{} { return p.done }

// Wait waits for the child and returns its exit error.
func (p *Process) Wait() error {
	<-p.done
	return p.waitErr
}

// Signal sends sig to the child alone.
func (p *Process) Signal(sig syscall.Signal) error {
	return p.cmd.Process.Signal(sig)
}

// Kill kills the child's process group and waits until the child is
// reaped.
func (p *Process) Kill() {
	select {
	case <-p.done:
		return
	default:
	}
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}
