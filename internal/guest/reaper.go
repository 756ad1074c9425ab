package guest

import (
	"os"
	"os/signal"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// reaper is PID 1's child bookkeeping. As init, the agent inherits every
// orphan in the guest and must reap them all; a process it started itself
// must get its own exit status. All waiting happens here, under mu, and a
// process is registered under the same lock it is started with, so no exit
// status can be reaped before its owner is known.
type reaper struct {
	mu      sync.Mutex
	waiters map[int]chan unix.WaitStatus
}

// newReaper returns the process's reaper. There is only one: it waits for
// any child, so a second would take exit statuses the first one owes.
var newReaper = sync.OnceValue(func() *reaper {
	r := &reaper{waiters: make(map[int]chan unix.WaitStatus)}
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGCHLD)
	go func() {
		for range sigs {
			r.reap()
		}
	}()
	return r
})

// start runs startFn (which starts one process and returns its pid) and
// registers the pid before any exit can be collected.
func (r *reaper) start(startFn func() (int, error)) (int, <-chan unix.WaitStatus, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	pid, err := startFn()
	if err != nil {
		return 0, nil, err
	}
	ch := make(chan unix.WaitStatus, 1)
	r.waiters[pid] = ch
	return pid, ch, nil
}

func (r *reaper) reap() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if err == unix.EINTR {
			continue
		}
		if pid <= 0 || err != nil {
			return
		}
		if ch, ok := r.waiters[pid]; ok {
			delete(r.waiters, pid)
			ch <- ws
		}
	}
}
